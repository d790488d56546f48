"""Model upscalers (ESRGAN, Real-ESRGAN and the other super-resolution networks spandrel knows).

spandrel detects the architecture and scale from a state dict and builds the
network. Its package imports torchvision at the top (for two architectures
that are not upscalers: LaMa inpainting and RestoreFormer face restoration),
and Easel does not install torchvision. Without it, the package is opened
without running its `__init__` and a registry is built from every
architecture module that imports, in spandrel's own detection order (read
from its main_registry.py), so detection is the same as spandrel's, minus the
two that need torchvision.

Inference runs in tiles (input tiles of TILE pixels overlapping by OVERLAP,
feathered together) so a 2048 px output fits in memory, under
torch.inference_mode, in fp32 on the CPU (bf16 when the precision setting
asks for it and the network supports it; never fp16 on a CPU). One model is
kept loaded: using another, or `unload()`, releases it.
"""
from __future__ import annotations

import ast
import importlib
import importlib.util
import logging
import sys
import threading
from pathlib import Path

log = logging.getLogger(__name__)

TILE = 192            # input pixels per tile side (A1111's ESRGAN_tile default)
OVERLAP = 16          # input pixels shared by neighbouring tiles, blended linearly
MAX_PASSES = 3        # a 2x model reaches 8x in three passes; more would only blow up memory

_lock = threading.Lock()
_loaded: tuple[str, object] | None = None    # (path, spandrel ImageModelDescriptor)
_registry = None
_unavailable: str | None = None
_scales: dict[str, int] = {}                  # path -> scale of every model loaded so far (for listings)


class UpscalerUnavailable(RuntimeError):
    """spandrel is missing or cannot be imported; the message says why."""


def _registry_without_torchvision():
    """spandrel's architectures, in its detection order, without importing its package __init__."""
    spec = importlib.util.find_spec("spandrel")
    package = importlib.util.module_from_spec(spec)    # __path__ set, __init__ not run
    sys.modules["spandrel"] = package
    registry_module = importlib.import_module("spandrel.__helpers.registry")
    main_registry = Path(spec.submodule_search_locations[0]) / "__helpers" / "main_registry.py"
    registry = registry_module.ArchRegistry()
    skipped = []
    for module_name, class_name in _arch_order(main_registry.read_text(encoding="utf-8")):
        try:
            module = importlib.import_module(f"spandrel.architectures.{module_name}")
        except ImportError as exc:
            skipped.append(f"{module_name} ({exc})")
            continue
        registry.add(registry_module.ArchSupport.from_architecture(getattr(module, class_name)()))
    if skipped:
        log.info("spandrel without torchvision: skipped %s", ", ".join(skipped))
    if not len(registry):
        raise UpscalerUnavailable("spandrel has no usable architecture")
    return registry


def _arch_order(source: str) -> list[tuple[str, str]]:
    """(module, class) of each `ArchSupport.from_architecture(Module.ClassArch())` in spandrel's registry file."""
    order = []
    for node in ast.walk(ast.parse(source)):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr == "from_architecture" and node.args
                and isinstance(node.args[0], ast.Call) and isinstance(node.args[0].func, ast.Attribute)
                and isinstance(node.args[0].func.value, ast.Name)):
            order.append((node.lineno, node.col_offset, node.args[0].func.value.id, node.args[0].func.attr))
    return [(module, cls) for _, _, module, cls in sorted(order)]   # source order = detection order


def registry():
    """spandrel's architecture registry; UpscalerUnavailable with the reason when spandrel cannot be used."""
    global _registry, _unavailable
    if _registry is not None:
        return _registry
    if _unavailable is not None:
        raise UpscalerUnavailable(_unavailable)
    try:
        try:
            import spandrel

            _registry = spandrel.MAIN_REGISTRY
        except ModuleNotFoundError as exc:
            if exc.name == "spandrel":
                raise UpscalerUnavailable("the spandrel package is not installed "
                                          "(scripts/install.py installs it from requirements.txt)") from None
            if exc.name != "torchvision":
                raise
            _registry = _registry_without_torchvision()
    except UpscalerUnavailable as exc:
        _unavailable = str(exc)
        raise
    except Exception as exc:     # a broken install: report it, do not take hires fix down with it
        _unavailable = f"spandrel cannot be imported: {type(exc).__name__}: {exc}"
        raise UpscalerUnavailable(_unavailable) from exc
    return _registry


def unavailable_reason() -> str | None:
    """None when model upscalers can be used, else why not.

    Cheap until a model has been used: listing upscalers must not import torch
    and forty network architectures; a failure at the first real import is
    reported from then on.
    """
    if _registry is not None:
        return None
    if _unavailable is not None:
        return _unavailable
    for package in ("spandrel", "einops"):
        if importlib.util.find_spec(package) is None:
            return (f"the {package} package is not installed "
                    "(scripts/install.py installs it from requirements.txt)")
    return None


def read_state_dict(path: Path) -> dict:
    """Tensors of a .safetensors or .pth file; .pth is read with weights_only (no code runs)."""
    import torch

    if path.suffix.lower() == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path), device="cpu")
    return torch.load(str(path), map_location="cpu", weights_only=True)


def load(path: Path):
    """spandrel ImageModelDescriptor for the file (cached; the previous model is released)."""
    global _loaded
    key = str(path)
    if _loaded is not None and _loaded[0] == key:
        return _loaded[1]
    _loaded = None        # release the old model before reading the new one
    reg = registry()      # first: it decides how the spandrel package is opened
    from spandrel.__helpers.canonicalize import canonicalize_state_dict
    from spandrel.__helpers.model_descriptor import ImageModelDescriptor
    from spandrel.__helpers.registry import UnsupportedModelError

    try:
        state_dict = read_state_dict(path)
    except Exception as exc:
        raise ValueError(f"cannot read upscaler model {path.name}: {type(exc).__name__}: {exc}") from None
    try:
        descriptor = reg.load(canonicalize_state_dict(state_dict))
    except UnsupportedModelError:
        raise ValueError(f"{path.name} is not an upscaler model architecture spandrel knows") from None
    except Exception as exc:     # detected, but the weights do not fit the architecture
        raise ValueError(f"cannot load upscaler model {path.name}: {type(exc).__name__}: {exc}") from None
    if not isinstance(descriptor, ImageModelDescriptor) or descriptor.input_channels not in (1, 3):
        raise ValueError(f"{path.name} is a {descriptor.architecture.name} model, not an image upscaler")
    device, dtype = _device_and_dtype(descriptor)
    descriptor.to(device, dtype).eval()
    _loaded = (key, descriptor)
    _scales[key] = int(descriptor.scale)
    return descriptor


def unload() -> None:
    """Release the cached model (its memory is freed once nothing else refers to it)."""
    global _loaded
    with _lock:
        _loaded = None


def _device_and_dtype(descriptor):
    import torch

    from modules import devices, shared

    choice = devices.choose(shared.cmd_opts, getattr(shared.opts, "precision", "fp32") if shared.opts else "fp32")
    dtype = choice.dtype
    if dtype == torch.float16 and (choice.device.type != "cuda" or not descriptor.supports_half):
        dtype = torch.float32
    if dtype == torch.bfloat16 and not descriptor.supports_bfloat16:
        dtype = torch.float32
    return choice.device, dtype


def known_scale(path: Path) -> int | None:
    """The model's own scale if it has been loaded before (listing never loads a model)."""
    return _scales.get(str(path))


def upscale(image, path: Path, target: tuple[int, int]):
    """`image` (PIL) run through the model until it covers `target`, then resized to exactly `target`."""
    from PIL import Image

    with _lock:
        descriptor = load(path)
        alpha = image.getchannel("A") if image.mode in ("RGBA", "LA") else None
        mode = "L" if descriptor.input_channels == 1 else "RGB"
        result = image.convert(mode)
        for _ in range(MAX_PASSES):
            if result.width >= target[0] and result.height >= target[1]:
                break
            result = _run(descriptor, result)
    if result.size != target:
        result = result.resize(target, Image.LANCZOS)
    result = result.convert("RGB")
    if alpha is not None:   # networks see RGB only: the alpha channel is resized on its own
        result.putalpha(alpha.resize(target, Image.LANCZOS))
    return result


def _run(descriptor, image):
    import numpy as np
    import torch
    from PIL import Image

    param = next(descriptor.model.parameters())
    array = np.asarray(image, dtype=np.float32) / 255.0
    tensor = torch.from_numpy(array.reshape(array.shape[0], array.shape[1], -1)).permute(2, 0, 1).unsqueeze(0)
    with torch.inference_mode():
        output = tiled(lambda x: descriptor(x.to(param.device, param.dtype)).float().cpu(),
                       tensor, int(descriptor.scale))
    output = output.squeeze(0).clamp(0, 1).permute(1, 2, 0).mul(255).round().to(torch.uint8).numpy()
    if output.shape[2] == 1:
        return Image.fromarray(output[:, :, 0], "L")
    return Image.fromarray(output[:, :, :3], "RGB")


def _starts(length: int, tile: int, overlap: int) -> list[int]:
    """Tile offsets along one side: full tiles stepping by tile - overlap, the last one flush with the edge."""
    if length <= tile:
        return [0]
    step = tile - overlap
    starts = list(range(0, length - tile, step))
    return starts + [length - tile]


def _ramp(size: int, fade: int, fade_start: bool, fade_end: bool):
    """1-D weights: 1 inside, rising linearly over `fade` pixels on the sides that meet another tile."""
    import torch

    weights = torch.ones(size)
    if fade > 0:
        rise = torch.arange(1, fade + 1, dtype=torch.float32) / (fade + 1)
        if fade_start:
            weights[:fade] = rise
        if fade_end:
            weights[-fade:] = rise.flip(0)
    return weights


def tiled(run, tensor, scale: int, tile: int = TILE, overlap: int = OVERLAP):
    """`run` (N,C,H,W -> N,C',H*scale,W*scale) over overlapping tiles, blended with linear feathering.

    Each output pixel is the weighted mean of the tiles that cover it; the
    weights fall off towards a tile's inner edges, so seams disappear.
    """
    import torch

    _, _, height, width = tensor.shape
    if height <= tile and width <= tile:
        return run(tensor)
    overlap = min(overlap, tile // 2)
    ys, xs = _starts(height, tile, overlap), _starts(width, tile, overlap)
    output = weight = None
    for y in ys:
        for x in xs:
            patch = tensor[:, :, y:y + tile, x:x + tile]
            result = run(patch)
            th, tw = result.shape[2], result.shape[3]
            if output is None:
                output = torch.zeros(result.shape[0], result.shape[1], height * scale, width * scale)
                weight = torch.zeros(1, 1, height * scale, width * scale)
            mask = (_ramp(th, overlap * scale, y > 0, y != ys[-1])[:, None]
                    * _ramp(tw, overlap * scale, x > 0, x != xs[-1])[None, :])
            output[:, :, y * scale:y * scale + th, x * scale:x * scale + tw] += result * mask
            weight[:, :, y * scale:y * scale + th, x * scale:x * scale + tw] += mask
    return output / weight
