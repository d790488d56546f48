"""External VAEs (models/VAE): list them and load one into a loaded model's VAE.

A VAE file is a .safetensors, .pt or .ckpt holding an original-layout VAE
(`encoder.down.0.block.0...`, optionally under `first_stage_model.` or `vae.`),
as A1111 users keep them, or a diffusers-layout AutoencoderKL state dict.
.pt/.ckpt files are read with weights_only=True like checkpoints.
"""
from __future__ import annotations

import os
from dataclasses import dataclass


VAE_EXTENSIONS = (".safetensors", ".pt", ".ckpt")


@dataclass(frozen=True)
class VaeInfo:
    filename: str   # absolute path
    name: str       # relative to its VAE dir, "/"-separated (A1111's sd_vae option value)


def list_vaes(dirs) -> list[VaeInfo]:
    """Every VAE file under `dirs` (subfolders included), sorted by name."""
    if isinstance(dirs, (str, os.PathLike)):
        dirs = [dirs]
    found: dict[str, VaeInfo] = {}
    for root_dir in dirs:
        root_dir = os.path.abspath(os.fspath(root_dir))
        for current, subdirs, files in os.walk(root_dir, followlinks=True):
            subdirs.sort()
            for file in files:
                if file.lower().endswith(VAE_EXTENSIONS):
                    path = os.path.join(current, file)
                    name = os.path.relpath(path, root_dir).replace(os.sep, "/")
                    found.setdefault(name, VaeInfo(path, name))
    return sorted(found.values(), key=lambda info: info.name.lower())


def load_vae_state_dict(path: str, vae_config: dict, dtype=None) -> dict:
    """A VAE file's weights with diffusers AutoencoderKL names."""
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint

    from modules.sd_models import CheckpointTensors  # torch only when a VAE is actually loaded

    tensors = CheckpointTensors(os.fspath(path), dtype)
    try:
        if any(".down_blocks." in key or ".up_blocks." in key for key in tensors.keys()):
            return {key.removeprefix("vae."): tensors[key] for key in tensors.keys()}  # already diffusers layout
        if "encoder.conv_in.weight" not in tensors and not any(k.endswith(".encoder.conv_in.weight") for k in tensors.keys()):
            raise ValueError(f"{path} does not look like a VAE: no encoder.conv_in.weight key")
        return convert_ldm_vae_checkpoint(tensors, vae_config)
    finally:
        tensors.release()  # closes the file; the returned tensors stay alive


def apply_vae(model, path: str) -> None:
    """Replace `model.vae`'s weights with the VAE file at `path` (shapes must match the model's VAE)."""
    vae = model.vae
    param = next(vae.parameters())
    state = load_vae_state_dict(path, dict(vae.config), param.dtype)
    expected = vae.state_dict()
    missing = [k for k in expected if k not in state]
    wrong = [f"{k} {tuple(state[k].shape)} != {tuple(v.shape)}" for k, v in expected.items()
             if k in state and state[k].shape != v.shape]
    if missing or wrong:
        raise ValueError(f"VAE {os.path.basename(path)} does not fit the {model.family.label} model's VAE: "
                         f"{len(missing)} weights missing (e.g. {missing[:3]}), {len(wrong)} of another shape "
                         f"(e.g. {wrong[:3]})")
    vae.load_state_dict({k: state[k] for k in expected}, strict=True)
    model.vae_path = os.path.abspath(path)
