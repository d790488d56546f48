"""Settings: defaults, labels, validation, and config.json.

Names, labels and behaviour follow A1111 where it has them, because
extensions and API clients read and write these keys (`opts.samples_format`,
`/sdapi/v1/options`). Extensions register their own settings with
`opts.add_option(key, OptionInfo(...))`, usually from `on_ui_settings`.

Setting a value checks it against the default's type and, when the option
declares them, its choices and range; a bad value raises ValueError naming
the key. Relative folder settings ("outputs/txt2img-images") are relative to
the data dir: resolve them with `modules.paths.Paths.resolve`.
"""

import json
import logging
import os
import shutil
import tempfile
import threading
import time

log = logging.getLogger(__name__)


class OptionInfo:
    """One setting: default, label, page component, and where it is shown.

    Same signature as A1111's OptionInfo. `component` is a Gradio component
    class (or None: the page picks one from the default's type and
    component_args); `component_args` is a dict (or a callable returning one)
    such as {"choices": [...]} or {"minimum": 1, "maximum": 12, "step": 1}.
    """

    def __init__(self, default=None, label="", component=None, component_args=None, onchange=None,
                 section=None, refresh=None, comment_before="", comment_after="", infotext=None,
                 restrict_api=False, category_id=None):
        self.default = default
        self.label = label
        self.component = component
        self.component_args = component_args
        self.onchange = onchange
        self.section = section
        self.refresh = refresh
        self.comment_before = comment_before
        self.comment_after = comment_after
        self.infotext = infotext            # infotext key this setting is written as, if any
        self.restrict_api = restrict_api    # not settable through the API
        self.category_id = category_id
        self.do_not_save = False
        self.requires_restart = False

    # A1111's chainable decorations: they only change how the page shows the option.
    def info(self, info):
        self.comment_after += f"<span class='info'>({info})</span>"
        return self

    def html(self, html):
        self.comment_after += html
        return self

    def link(self, label, url):
        self.comment_before += f"[<a href='{url}' target='_blank'>{label}</a>]"
        return self

    def js(self, label, js_func):
        self.comment_before += f"[<a onclick='{js_func}(); return false'>{label}</a>]"
        return self

    def needs_restart(self):
        self.requires_restart = True
        self.comment_after += " <span class='info'>(requires restart)</span>"
        return self

    def needs_reload_ui(self):
        self.comment_after += " <span class='info'>(requires Reload UI)</span>"
        return self

    def static_component_args(self):
        """component_args as a dict, or {} when absent or computed at page build time."""
        return self.component_args if isinstance(self.component_args, dict) else {}

    def __repr__(self):
        return f"OptionInfo(default={self.default!r}, label={self.label!r}, section={self.section!r})"


def options_section(section_identifier, options_dict):
    """Put every OptionInfo in options_dict into one section (A1111 helper)."""
    for info in options_dict.values():
        info.section = section_identifier
    return options_dict


class Options:
    """The live settings object (`shared.opts`): attribute access, validated set.

    `data` holds the current value of every registered setting. Keys found in
    config.json that no one has registered yet (typically an extension's,
    registered later during start-up) are kept aside, applied when they are
    registered, and written back on save so they are never lost.
    """

    def __init__(self, data_labels=None):
        labels = default_options() if data_labels is None else dict(data_labels)
        object.__setattr__(self, "data_labels", labels)
        object.__setattr__(self, "data", {k: v.default for k, v in labels.items()})
        object.__setattr__(self, "_unregistered", {})
        object.__setattr__(self, "_lock", threading.RLock())

    # ---- attribute access -------------------------------------------------
    def __getattr__(self, key):
        # Only called when normal lookup fails, i.e. for settings.
        data = object.__getattribute__(self, "data")
        if key in data:
            return data[key]
        labels = object.__getattribute__(self, "data_labels")
        if key in labels:
            return labels[key].default
        raise AttributeError(f"no setting named {key!r}")

    def __setattr__(self, key, value):
        if key in self.data_labels:
            self.set(key, value)
        else:
            object.__setattr__(self, key, value)

    def __contains__(self, key):
        return key in self.data_labels

    # ---- reading and writing values ---------------------------------------
    def get_default(self, key):
        return self.data_labels[key].default if key in self.data_labels else None

    def validate(self, key, value):
        """Return value as stored for key, or raise ValueError naming key and what is allowed."""
        if key not in self.data_labels:
            raise ValueError(f"unknown setting {key!r}")
        info = self.data_labels[key]
        value = _check_type(key, info.default, value)
        _check_component_args(key, info.static_component_args(), value)
        return value

    def set(self, key, value, is_api=False, run_callbacks=True):
        """Validate and store a value; run its onchange callback when it changed.

        Returns True when the value changed. If the callback raises, the old
        value is restored and the error propagates.
        """
        info = self.data_labels.get(key)
        if info is None:
            raise ValueError(f"unknown setting {key!r}")
        if is_api and info.restrict_api:
            raise ValueError(f"setting {key!r} cannot be changed through the API")
        value = self.validate(key, value)
        with self._lock:
            old = self.data.get(key, info.default)
            if old == value and type(old) is type(value):
                return False
            self.data[key] = value
        if run_callbacks and info.onchange is not None:
            try:
                info.onchange()
            except Exception:
                with self._lock:
                    if self.data.get(key) == value:
                        self.data[key] = old
                raise
        return True

    def onchange(self, key, func, call=True):
        """Register func to run whenever key changes (and now, if call)."""
        self.data_labels[key].onchange = func
        if call:
            func()

    def add_option(self, key, info):
        """Register a setting (extensions do this); a value loaded earlier is applied now."""
        with self._lock:
            self.data_labels[key] = info
            if key in self._unregistered:
                pending = self._unregistered.pop(key)
                try:
                    self.data[key] = self.validate(key, pending)
                except ValueError as e:
                    log.warning("config.json: %s; using the default %r", e, info.default)
                    self.data[key] = info.default
            elif key not in self.data:
                self.data[key] = info.default

    def as_dict(self):
        """Every registered setting with its current value."""
        with self._lock:
            return {k: self.data.get(k, info.default) for k, info in self.data_labels.items()}

    def dumpjson(self):
        return json.dumps(self.as_dict())

    # ---- config.json ------------------------------------------------------
    def save(self, path):
        """Write settings to path atomically (temporary file, then rename)."""
        path = os.fspath(path)
        folder = os.path.dirname(os.path.abspath(path))
        os.makedirs(folder, exist_ok=True)
        with self._lock:
            payload = {**self._unregistered,
                       **{k: v for k, v in self.data.items() if not self._do_not_save(k)}}
        fd, tmp = tempfile.mkstemp(prefix=".config-", suffix=".tmp", dir=folder)
        try:
            with os.fdopen(fd, "w", encoding="utf8") as f:
                json.dump(payload, f, indent=4, ensure_ascii=False)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.remove(tmp)
            raise

    def load(self, path):
        """Read settings from path. A missing file means defaults.

        A file that is not a JSON object is copied aside
        (config.json.corrupt-YYYYmmdd-HHMMSS) and defaults are used, so a
        half-written file never stops the app. Values of the wrong type fall
        back to the default with a warning; keys no one registered are kept
        for later (see class docstring) with a warning.
        """
        path = os.fspath(path)
        if not os.path.exists(path):
            return
        try:
            with open(path, encoding="utf8") as f:
                loaded = json.load(f)
            if not isinstance(loaded, dict):
                raise ValueError(f"expected a JSON object, found {type(loaded).__name__}")
        except (ValueError, UnicodeDecodeError) as e:
            backup = f"{path}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}"
            shutil.copyfile(path, backup)
            log.error("settings file %s is unreadable (%s); copied it to %s and using defaults",
                      path, e, backup)
            loaded = {}

        with self._lock:
            self.data.clear()
            self.data.update({k: v.default for k, v in self.data_labels.items()})
            self._unregistered.clear()
            for key, value in loaded.items():
                if key not in self.data_labels:
                    self._unregistered[key] = value
                    continue
                try:
                    self.data[key] = self.validate(key, value)
                except ValueError as e:
                    log.warning("%s: %s; using the default %r", path, e, self.data_labels[key].default)
        if self._unregistered:
            log.warning("%s: ignoring unknown setting(s) %s (kept in the file in case an extension "
                        "registers them later)", path, ", ".join(sorted(self._unregistered)))

    def _do_not_save(self, key):
        info = self.data_labels.get(key)
        return info is not None and info.do_not_save


# ---- validation helpers ---------------------------------------------------

def _check_type(key, default, value):
    """Compare with the default's type; ints are accepted for floats, whole floats for ints."""
    def bad(expected):
        return ValueError(f"setting {key!r} must be {expected}, got {value!r}")

    if default is None:
        return value
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise bad("true or false")
        return value
    if isinstance(default, int):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad("a whole number")
        return value
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad("a number")
        return float(value)
    if isinstance(default, str):
        if not isinstance(value, str):
            raise bad("text")
        return value
    if isinstance(default, (list, tuple)):
        if not isinstance(value, (list, tuple)):
            raise bad("a list")
        return list(value)
    if isinstance(default, dict):
        if not isinstance(value, dict):
            raise bad("an object")
        return value
    return value


def _check_component_args(key, args, value):
    choices = args.get("choices")
    if isinstance(choices, (list, tuple)) and choices:
        for item in value if isinstance(value, list) else [value]:
            if item not in choices:
                allowed = ", ".join(repr(c) for c in choices)
                raise ValueError(f"setting {key!r} must be one of {allowed}; got {item!r}")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        low, high = args.get("minimum"), args.get("maximum")
        if (low is not None and value < low) or (high is not None and value > high):
            raise ValueError(f"setting {key!r} must be between {low} and {high}, got {value!r}")


# ---- Easel's built-in settings ----------------------------------------------

def default_options():
    """A fresh dict of every built-in setting (A1111 keys and labels where they exist)."""
    saving = ("saving-images", "Saving images/grids")
    paths = ("saving-paths", "Paths for saving")
    to_dirs = ("saving-to-dirs", "Saving to a directory")
    sd = ("sd", "Stable Diffusion")
    vae = ("sd_vae", "VAE")
    previews = ("ui", "Live previews")
    image_formats = {"choices": ["png", "jpg", "jpeg", "webp"]}

    options = {}
    options.update(options_section(saving, {
        "samples_save": OptionInfo(True, "Always save all generated images"),
        "samples_format": OptionInfo("png", "File format for images", component_args=image_formats),
        "samples_filename_pattern": OptionInfo("", "Images filename pattern").info(
            "empty: NNNNN-[seed]-[prompt_spaces]"),
        "save_images_add_number": OptionInfo(True, "Add number to filename when saving"),
        "grid_save": OptionInfo(True, "Always save all generated image grids"),
        "grid_format": OptionInfo("png", "File format for grids", component_args=image_formats),
        "grid_only_if_multiple": OptionInfo(True, "Do not save grids consisting of one picture"),
        "return_grid": OptionInfo(True, "Show grid in gallery (and return it first from the API)"),
        "n_rows": OptionInfo(-1, "Grid row count; use -1 for autodetect and 0 for it to be same as batch size",
                             component_args={"minimum": -1, "maximum": 16, "step": 1}),
        "enable_pnginfo": OptionInfo(
            True, "Save text information about generation parameters as chunks to png files"),
        "save_txt": OptionInfo(False, "Create a text file with infotext next to every image"),
        "jpeg_quality": OptionInfo(80, "Quality for saved jpeg and webp images",
                                   component_args={"minimum": 1, "maximum": 100, "step": 1}),
    }))
    options.update(options_section(paths, {
        "outdir_samples": OptionInfo("", "Output directory for images; if empty, defaults to three directories below"),
        "outdir_txt2img_samples": OptionInfo("outputs/txt2img-images", "Output directory for txt2img images"),
        "outdir_img2img_samples": OptionInfo("outputs/img2img-images", "Output directory for img2img images"),
        "outdir_extras_samples": OptionInfo("outputs/extras-images", "Output directory for images from extras tab"),
        "outdir_grids": OptionInfo("", "Output directory for grids; if empty, defaults to two directories below"),
        "outdir_txt2img_grids": OptionInfo("outputs/txt2img-grids", "Output directory for txt2img grids"),
        "outdir_img2img_grids": OptionInfo("outputs/img2img-grids", "Output directory for img2img grids"),
    }))
    options.update(options_section(to_dirs, {
        "save_to_dirs": OptionInfo(True, "Save images to a subdirectory"),
        "grid_save_to_dirs": OptionInfo(True, "Save grids to a subdirectory"),
        "directories_filename_pattern": OptionInfo("[date]", "Directory name pattern"),
        "directories_max_prompt_words": OptionInfo(
            8, "Max prompt words for [prompt_words] pattern",
            component_args={"minimum": 1, "maximum": 20, "step": 1}),
    }))
    options.update(options_section(sd, {
        "sd_model_checkpoint": OptionInfo(None, "Stable Diffusion checkpoint"),
        "CLIP_stop_at_last_layers": OptionInfo(
            1, "Clip skip", component_args={"minimum": 1, "maximum": 12, "step": 1}, infotext="Clip skip"),
        "precision": OptionInfo(
            "fp32", "Compute precision on CPU", component_args={"choices": ["fp32", "bf16"]}).info(
            "bf16 is faster on CPUs with bf16 support, slightly less exact; changing it reloads the model"),
        "unet_compile": OptionInfo(
            "Off", "Compile the U-Net (torch.compile)",
            component_args={"choices": ["Off", "Inductor", "Inductor + frozen weights",
                                        "Inductor + CUDA graphs"]}).info(
            "faster steps after a one-time compile (minutes) per model, image size and batch; "
            "frozen weights: 0.74x step time in bf16 on CPU, recompiles whenever a LoRA changes the weights"),
        "emphasis": OptionInfo(
            "Original", "Emphasis mode",
            component_args={"choices": ["None", "Ignore", "Original", "No norm"]}, infotext="Emphasis"),
        "eta_noise_seed_delta": OptionInfo(0, "Eta noise seed delta", component_args={"minimum": 0},
                                           infotext="ENSD"),
        "randn_source": OptionInfo(
            "GPU", "Random number generator source",
            component_args={"choices": ["GPU", "CPU", "NV"]}, infotext="RNG"),
        "sd_noise_schedule": OptionInfo(
            "Default", "Noise schedule for sampling",
            component_args={"choices": ["Default", "Zero Terminal SNR"]}, infotext="Noise Schedule").info(
            "for models trained with zero terminal SNR; a checkpoint marked so (ztsnr key) always samples with it"),
    }))
    options.update(options_section(vae, {
        "sd_vae": OptionInfo("Automatic", "SD VAE").info(
            "Automatic: a VAE named like the checkpoint, else the checkpoint's own"),
        "vae_tiling": OptionInfo(
            "Auto", "VAE tiled decode", component_args={"choices": ["Auto", "On", "Off"]}).info(
            "decode large images in overlapping tiles to bound memory; "
            "Auto: only above 1024x1024 pixels for SD (latent larger than 128x128)"),
    }))
    options.update(options_section(previews, {
        "live_previews_enable": OptionInfo(True, "Show live previews of the created image"),
        "show_progress_every_n_steps": OptionInfo(
            1, "Live preview display period",
            component_args={"minimum": -1, "maximum": 32, "step": 1}).info(
            "in sampling steps; -1: only at the end of each image"),
        "show_progress_type": OptionInfo(
            "Approx cheap", "Live preview method",
            component_args={"choices": ["Full", "Approx cheap"]}).info(
            "Full = VAE decode (slow); Approx cheap = fixed colour map (free)"),
        "live_preview_refresh_period": OptionInfo(
            1000, "Progressbar and preview update period",
            component_args={"minimum": 100, "maximum": 10000, "step": 100}).info("in milliseconds"),
    }))
    return options
