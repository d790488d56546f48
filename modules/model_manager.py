"""Which checkpoint and VAE are loaded, and switching between them.

Loading runs as a job on the worker queue, so a generation queued after a
switch uses the new model and no request handler ever touches a model that
is being replaced. The page polls `status_text()` while a load is running.
"""
from __future__ import annotations

import gc
import logging
import os
import threading
import time

log = logging.getLogger(__name__)

NO_CHECKPOINT_HELP = ("No checkpoint found: put a .safetensors or .ckpt file (or a diffusers folder) "
                      "in models/Stable-diffusion and press the refresh button")


class ModelManager:
    def __init__(self, queue, paths, opts, choose_device, callbacks=None, extra_checkpoints=()):
        self.queue = queue
        self.paths = paths
        self.opts = opts
        self._choose_device = choose_device       # called on first load: importing torch waits until then
        self._device_choice = None
        self.extra_checkpoints = [c for c in extra_checkpoints if c]   # --ckpt files outside the folders
        self.callbacks = callbacks or []          # called with the LoadedModel after each load
        self.current = None                       # LoadedModel
        self._checkpoints: list = []
        self._status = "Starting…"
        self._lock = threading.Lock()
        self.refresh()

    # -- listing ---------------------------------------------------------------
    def refresh(self) -> list:
        from modules import checkpoints as sd_models  # listing needs no torch

        with self._lock:
            cache = str(self.paths.cache_file)
            found = sd_models.list_checkpoints(self.paths.ckpt_dirs, cache_path=cache)
            known = {c.filename for c in found}
            for path in self.extra_checkpoints:
                if not os.path.exists(path):
                    raise FileNotFoundError(f"--ckpt: no such file or folder: {path}")
                info = sd_models.CheckpointInfo(os.path.abspath(path), os.path.basename(path), cache_path=cache)
                if info.filename not in known:
                    found.append(info)
            self._checkpoints = found
        if not self._checkpoints and self.current is None:
            self._status = NO_CHECKPOINT_HELP
        return self._checkpoints

    def checkpoints(self) -> list:
        return list(self._checkpoints)

    def checkpoint_titles(self) -> list[str]:
        return [c.title for c in self._checkpoints]

    def find(self, name: str | None):
        """Checkpoint by title, file name, model name or short hash."""
        if not name:
            return None
        for info in self._checkpoints:
            if name in (info.title, info.name, info.model_name, info.filename) or name == info.title.split(" [")[0]:
                return info
        for info in self._checkpoints:  # hashes last: they cost a read of the file the first time
            if len(name) >= 8 and info.shorthash().startswith(name.strip("[]")):
                return info
        return None

    def default_checkpoint(self, preferred: str | None = None):
        """preferred (--ckpt), then the saved setting, then the first model of --ckpt-dir (the user pointed
        there on purpose), then the shipped demo model, then the first model found."""
        for name in (preferred, getattr(self.opts, "sd_model_checkpoint", None)):
            info = self.find(name)
            if info is not None:
                return info
        override = getattr(self.paths, "ckpt_dir_override", None)
        if override:
            root = os.path.join(os.path.abspath(override), "")
            for info in self._checkpoints:
                if info.filename.startswith(root):
                    return info
        info = self.find("easel-demo.safetensors")
        if info is not None:
            return info
        return self._checkpoints[0] if self._checkpoints else None

    def current_title(self) -> str | None:
        return self.current.checkpoint.title if self.current is not None else None

    def current_family(self):
        return self.current.family if self.current is not None else None

    def vae_names(self) -> list[str]:
        from modules import sd_vae

        return ["Automatic", "None"] + [v.name for v in sd_vae.list_vaes([self.paths.vae_dir])]

    @property
    def device_choice(self):
        if self._device_choice is None:
            self._device_choice = self._choose_device()
        return self._device_choice

    def device_settings_changed(self) -> None:
        """Choose the device and precision again, and reload the loaded model in them (queued)."""
        self._device_choice = None
        if self.current is not None:
            info = self.current.checkpoint
            self.queue.submit(lambda job: self.reload_now(info), label=f"reload {info.name}")

    # -- state -----------------------------------------------------------------
    def status_text(self) -> str:
        return self._status

    def require_model(self):
        """The loaded model, or an error that says how to get one."""
        if self.current is not None:
            return self.current
        if not self._checkpoints:
            raise RuntimeError(NO_CHECKPOINT_HELP)
        raise RuntimeError(f"No model is loaded ({self._status})")

    # -- loading (on the worker) -----------------------------------------------
    def request_load(self, name: str | None = None):
        """Queue loading the named checkpoint (default: settings/demo/first); returns the Job."""
        info = self.find(name) if name else self.default_checkpoint()
        if info is None:
            raise ValueError(f"checkpoint {name!r} not found; available: {self.checkpoint_titles()}" if name else NO_CHECKPOINT_HELP)
        self._status = f"Queued: loading {info.name}"
        return self.queue.submit(lambda job: self.load_now(info), label=f"load {info.name}")

    def request_vae(self, name: str):
        return self.queue.submit(lambda job: self.load_vae_now(name), label=f"vae {name}")

    def load_now(self, info):
        """Load `info` (freeing the old model first); runs on the worker thread."""
        import torch

        from modules import devices, offload, sd_models

        if self.current is not None and self.current.checkpoint.filename == info.filename:
            self._status = f"Ready: {info.title}"
            return self.current
        self.unload_now()
        self._status = f"Loading {info.name}…"
        started = time.perf_counter()
        choice = self.device_choice
        # with --medvram/--lowvram the weights stay in CPU memory; hooks move parts to the GPU as they run
        load_device = choice.device if choice.offload == "none" else torch.device("cpu")
        try:
            model = sd_models.load_model(info, load_device, choice.dtype)
        except Exception as exc:
            self._status = f"Error loading {info.name}: {exc}"
            raise
        devices.apply_attention(model.unet, model.vae, choice.attention)
        offload.apply(model, choice.offload, choice.device)
        self.current = model
        self.opts.set("sd_model_checkpoint", info.title)
        vae_choice = getattr(self.opts, "sd_vae", "Automatic")
        if vae_choice not in ("Automatic", "None", None):
            self.load_vae_now(vae_choice)
        self._status = f"Ready: {info.title} ({model.family.label}, {time.perf_counter() - started:.1f} s)"
        log.info("loaded %s as %s in %.1f s", info.name, model.family.id, time.perf_counter() - started)
        for callback in self.callbacks:
            callback(model)
        return model

    def reload_now(self, info):
        """Load `info` afresh even if it is the loaded file (load_now would keep the loaded model as it is)."""
        self.unload_now()
        return self.load_now(info)

    def load_vae_now(self, name: str):
        """Apply a VAE file from the VAE folder, or go back to the checkpoint's own ("Automatic"/"None")."""
        from modules import sd_vae

        if self.current is None:
            raise RuntimeError("load a checkpoint before choosing a VAE")
        if name in ("Automatic", "None", None, ""):
            self.opts.set("sd_vae", name or "Automatic")
            if getattr(self.current, "vae_path", None):   # an external VAE is in place: reload the checkpoint's own
                self.reload_now(self.current.checkpoint)
            return name
        vae = next((v for v in sd_vae.list_vaes([self.paths.vae_dir]) if v.name == name), None)
        if vae is None:
            raise ValueError(f"sd_vae: no VAE named {name!r} in {self.paths.vae_dir}")
        sd_vae.apply_vae(self.current, vae.filename)
        self.opts.set("sd_vae", name)
        return name

    def unload_now(self) -> None:
        if self.current is not None:
            self.current.unload()
            self.current = None
            gc.collect()
        self._status = "No model loaded"
