"""The upscalers users pick by name: "None", Lanczos and Nearest (PIL), and model files.

Model upscalers are the `.pth` / `.safetensors` files in models/ESRGAN/ and
models/RealESRGAN/, named by their file name without extension (A1111's
names). The folders are read on every call, so a file dropped in shows up
without a restart (the page's dropdowns are filled when the page is built).
Models run through modules/upscaler_models.py (spandrel); when spandrel
cannot be used the files are still listed by `unavailable()` with the reason,
and naming one is an error that says it.

Used by hires fix (pixel upscalers), the Extras tab and the extras API.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

NONE = "None"
PIL_FILTERS = {"Lanczos": "LANCZOS", "Nearest": "NEAREST"}
MODEL_FOLDERS = ("ESRGAN", "RealESRGAN")
MODEL_EXTENSIONS = (".pth", ".safetensors")
DEFAULT_SCALE = 4       # A1111 lists built-in upscalers with scale 4; model files until their scale is known


@dataclass(frozen=True)
class Upscaler:
    name: str
    path: Path | None = None     # None: a PIL resampler
    scale: int = DEFAULT_SCALE   # the model's own factor (a guess from the file name until it is loaded)

    @property
    def is_model(self) -> bool:
        return self.path is not None


def model_folders() -> list[Path]:
    from modules import shared

    if shared.paths is None:
        return []
    return [shared.paths.model_dir(name) for name in MODEL_FOLDERS]


def _scale_from_name(stem: str) -> int:
    """"4x-UltraSharp", "ESRGAN_4x", "RealESRGAN_x2plus" -> 4, 4, 2 (A1111's files are named this way)."""
    match = re.search(r"(?:^|[^a-z0-9])(\d)x(?![a-z])|x(\d)(?:plus|[^0-9]|$)", stem, re.IGNORECASE)
    if match:
        return int(match.group(1) or match.group(2))
    return DEFAULT_SCALE


def model_files() -> list[Upscaler]:
    """Model upscalers on disk, sorted by name; the first file of a name wins."""
    from modules import upscaler_models

    found: dict[str, Upscaler] = {}
    for folder in model_folders():
        if not folder.is_dir():
            continue
        for path in sorted(folder.iterdir()):
            if path.suffix.lower() in MODEL_EXTENSIONS and path.is_file() and not path.name.startswith("."):
                name = path.stem
                if name not in found and name not in PIL_FILTERS and name != NONE:
                    found[name] = Upscaler(name, path, upscaler_models.known_scale(path) or _scale_from_name(name))
    return sorted(found.values(), key=lambda u: u.name.lower())


def unavailable() -> dict[str, str]:
    """Model files that cannot be used, with the reason (spandrel missing); {} when they can."""
    from modules import upscaler_models

    files = model_files()
    reason = upscaler_models.unavailable_reason() if files else None
    return {u.name: reason for u in files} if reason else {}


def available(include_none: bool = False) -> list[Upscaler]:
    """Upscalers that can be used, in A1111's order: None, Lanczos, Nearest, then model files."""
    builtin = [Upscaler(name) for name in PIL_FILTERS]
    broken = unavailable()
    models = [u for u in model_files() if u.name not in broken]
    return ([Upscaler(NONE)] if include_none else []) + builtin + models


def names(include_none: bool = False) -> list[str]:
    return [u.name for u in available(include_none)]


def find(name: str, field: str = "upscaler", include_none: bool = False) -> Upscaler:
    """The upscaler called `name`; ValueError naming `field` and the choices otherwise."""
    for upscaler in available(include_none):
        if upscaler.name == name:
            return upscaler
    broken = unavailable()
    if name in broken:
        raise ValueError(f"{field}: upscaler {name!r} cannot be used: {broken[name]}")
    raise ValueError(f"{field}: unknown upscaler {name!r}; available: {', '.join(names(include_none))}")


def upscale_to(image, upscaler: Upscaler | str, size: tuple[int, int]):
    """`image` (PIL) resized to `size` (width, height) by the upscaler; "None" returns it unchanged."""
    from PIL import Image

    if isinstance(upscaler, str):
        upscaler = find(upscaler, include_none=True)
    size = (int(size[0]), int(size[1]))
    if upscaler.name == NONE:
        return image
    if not upscaler.is_model:
        return image.resize(size, getattr(Image.Resampling, PIL_FILTERS[upscaler.name]))
    from modules import upscaler_models

    return upscaler_models.upscale(image, upscaler.path, size)


def unload() -> None:
    """Release the loaded upscaler model."""
    from modules import upscaler_models

    upscaler_models.unload()
