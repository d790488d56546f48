"""LoRA networks from models/Lora, merged into the loaded model's weights for one job.

`<lora:name:weight>` (or `<lora:name:te_weight:unet_weight>`, or named
`te=`/`unet=`) in a prompt asks for a file models/Lora/name.safetensors.
For every layer the file adapts, W += weight * alpha/rank * up @ down
(1x1 and 3x3 convolutions included), computed in fp32. The original weights
are kept and copied back afterwards, so the model is restored bit for bit
and switching LoRA between jobs needs no reload.

Key formats read:
- kohya / A1111: `lora_unet_<module>`, `lora_te_<module>` (SDXL:
  `lora_te1_`, `lora_te2_`) + `.lora_down.weight`, `.lora_up.weight`,
  `.alpha`. U-Net module names may be diffusers' (`down_blocks_0_...`) or
  the original LDM layout's (`input_blocks_1_1_...`, what kohya writes for
  SDXL); the latter are matched through checkpoint_export's name mapping.
- diffusers / PEFT: `unet.<module>.lora_A.weight` / `.lora_B.weight`
  (also `text_encoder.` / `text_encoder_2.`, and the older
  `...processor.to_q_lora.down.weight` spelling). Without `.alpha` keys the
  scale is 1 (PEFT keeps lora_alpha outside the weights file).
LyCORIS formats (LoHa, LoKr, DoRA scales, `lora_mid`) are reported as not
applied, never half-applied.
"""
from __future__ import annotations

import hashlib
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from modules import extra_networks

log = logging.getLogger(__name__)

EXTENSIONS = (".safetensors", ".pt", ".ckpt")
COMPONENT_PREFIXES = {"lora_unet_": "unet", "lora_te_": "te1", "lora_te1_": "te1", "lora_te2_": "te2"}
DIFFUSERS_PREFIXES = {"unet": "unet", "text_encoder": "te1", "text_encoder_2": "te2"}
_KOHYA_KEY = re.compile(r"^(lora_unet_|lora_te1_|lora_te2_|lora_te_)(\w+?)\.(lora_down\.weight|lora_up\.weight|alpha)$")
_DIFFUSERS_KEY = re.compile(
    r"^(unet|text_encoder_2|text_encoder)\.(.+?)\.(lora_A\.weight|lora_B\.weight|lora\.down\.weight|lora\.up\.weight"
    r"|lora_linear_layer\.down\.weight|lora_linear_layer\.up\.weight|down\.weight|up\.weight|alpha)$")


# ---------------------------------------------------------------- files

@dataclass
class LoraFile:
    name: str            # file name without extension: what <lora:NAME:...> refers to
    filename: str

    def hash(self) -> str:
        """A1111's LoRA hash: sha256 of a .safetensors file after its header (the "addnet" hash), else of the file."""
        stat = os.stat(self.filename)
        key = (self.filename, stat.st_mtime_ns, stat.st_size)
        if key not in _hashes:  # LoraFile objects are listed afresh per job; the hash outlives them
            _hashes[key] = _addnet_hash(self.filename)
        return _hashes[key]

    def shorthash(self) -> str:
        """First 12 hex digits, what A1111 writes into `Lora hashes`."""
        return self.hash()[:12]


_hashes: dict[tuple, str] = {}


def _addnet_hash(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        if path.lower().endswith(".safetensors"):
            header_length = int.from_bytes(f.read(8), "little")
            f.seek(8 + header_length)
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def list_loras(folder) -> dict[str, LoraFile]:
    """name -> LoraFile for the files under `folder` (sub-folders included; the first of a name wins)."""
    found: dict[str, LoraFile] = {}
    folder = Path(folder)
    if not folder.is_dir():
        return found
    for root, _, names in sorted(os.walk(folder, followlinks=True)):
        for name in sorted(names):
            if name.lower().endswith(EXTENSIONS):
                found.setdefault(Path(name).stem, LoraFile(Path(name).stem, str(Path(root) / name)))
    return found


def read_lora_file(path: str) -> dict[str, torch.Tensor]:
    if path.lower().endswith(".safetensors"):
        from safetensors.torch import load_file

        return load_file(path)
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise ValueError(f"{path}: refused, not a plain tensor file ({type(error).__name__})") from None
    data = data.get("state_dict", data) if isinstance(data, dict) else data
    if not isinstance(data, dict):
        raise ValueError(f"{path}: not a LoRA state dict")
    return {k: v for k, v in data.items() if isinstance(v, torch.Tensor)}


# ---------------------------------------------------------------- keys -> (component, module, down, up, alpha)

@dataclass
class LoraLayer:
    component: str        # "unet", "te1", "te2"
    name: str             # module name as the file spells it (kohya flat name or dotted diffusers path)
    down: torch.Tensor | None = None
    up: torch.Tensor | None = None
    alpha: float | None = None

    def delta(self, shape: torch.Size) -> torch.Tensor:
        """up @ down * alpha/rank in fp32, shaped like the weight it adapts."""
        down, up = self.down.float(), self.up.float()
        rank = down.shape[0]
        product = up.reshape(up.shape[0], -1) @ down.reshape(rank, -1)
        if down.dim() == 4 and up.dim() == 4 and up.shape[2:] != (1, 1):
            raise ValueError(f"{self.name}: up weight with a {tuple(up.shape[2:])} kernel is not a LoRA layout")
        if product.numel() != torch.Size(shape).numel():
            raise ValueError(f"{self.name}: LoRA gives {tuple(product.shape)}, the layer's weight is {tuple(shape)}")
        scale = (self.alpha / rank) if self.alpha is not None else 1.0
        return (product * scale).reshape(shape)


def lora_layers(state_dict: dict) -> tuple[list[LoraLayer], list[str]]:
    """The LoRA layers of a file, and the keys that are in no format applied here."""
    layers: dict[tuple[str, str], LoraLayer] = {}
    unsupported = []
    for key, tensor in state_dict.items():
        if m := _KOHYA_KEY.match(key):
            component, name, part = COMPONENT_PREFIXES[m[1]], m[2], m[3]
        elif m := _DIFFUSERS_KEY.match(key):
            component, name, part = DIFFUSERS_PREFIXES[m[1]], _diffusers_module(m[2]), m[3]
        else:
            unsupported.append(key)
            continue
        layer = layers.setdefault((component, name), LoraLayer(component, name))
        if part == "alpha":
            layer.alpha = float(tensor.float().reshape(-1)[0])
        elif part.startswith(("lora_A", "lora_down", "lora.down", "lora_linear_layer.down", "down")):
            layer.down = tensor
        else:
            layer.up = tensor
    complete = []
    for layer in layers.values():
        if layer.down is None or layer.up is None:
            unsupported.append(f"{layer.name} (down or up weight missing)")
        else:
            complete.append(layer)
    return complete, unsupported


def _diffusers_module(path: str) -> str:
    """Old diffusers attention-processor spellings -> the module path."""
    path = path.replace(".processor.", ".")
    path = re.sub(r"\.to_out_lora$", ".to_out.0", path)
    return re.sub(r"\.(to_[qkv])_lora$", r".\1", path)


def _flat(name: str) -> str:
    return name.replace(".", "_")


def module_index(model) -> dict[str, dict[str, torch.nn.Module]]:
    """component -> {every name a LoRA file may use for a layer: the layer}, cached on the model's U-Net."""
    cached = getattr(model, "_lora_module_index", None)
    if cached is not None:
        return cached
    index: dict[str, dict[str, torch.nn.Module]] = {}
    adaptable = (torch.nn.Linear, torch.nn.Conv2d)
    unet_names = {name: module for name, module in model.unet.named_modules() if isinstance(module, adaptable)}
    unet = {}
    for name, module in unet_names.items():
        unet[name] = module
        unet[_flat(name)] = module
    try:  # the original LDM names of the same layers (kohya's SDXL files use them)
        from modules.checkpoint_export import unet_to_original

        keys = {f"{name}.weight": None for name in unet_names}
        original = unet_to_original(keys, int(model.unet.config.layers_per_block))
        for (diffusers_key, _), ldm_key in zip(keys.items(), original):
            unet.setdefault(_flat(ldm_key[:-len(".weight")]), unet_names[diffusers_key[:-len(".weight")]])
    except (KeyError, ValueError, TypeError) as error:
        log.warning("LoRA: no LDM names for this U-Net (%s); diffusers-named LoRA files still work", error)
    index["unet"] = unet
    for i, encoder in enumerate(model.text_encoders):
        names = {}
        for name, module in encoder.named_modules():
            if isinstance(module, adaptable):
                # transformers v5's CLIPTextModel has no `text_model.` level; files always spell it
                full = name if name.startswith(("text_model.", "text_projection")) else f"text_model.{name}"
                names[full] = module
                names[_flat(full)] = module
        index[f"te{i + 1}"] = names
    try:
        model._lora_module_index = index
    except AttributeError:
        pass
    return index


# ---------------------------------------------------------------- applying to a model

@dataclass
class NetworkRequest:
    """One `<lora:...>` tag: which file and its weights for the text encoder and the U-Net."""
    name: str
    te_multiplier: float = 1.0
    unet_multiplier: float = 1.0


def parse_requests(params: list[extra_networks.ExtraNetworkParams]) -> tuple[list[NetworkRequest], list[str]]:
    """`<lora:name[:te[:unet]]>` (named `te=`, `unet=` too) -> requests; bad numbers become warnings."""
    requests, warnings = [], []
    for p in params:
        if not p.positional or not p.positional[0]:
            warnings.append(f"<lora:{':'.join(p.items)}>: no LoRA name; the tag was ignored")
            continue
        name = p.positional[0]
        try:
            te = float(p.named.get("te", p.positional[1] if len(p.positional) > 1 else 1.0))
            unet = float(p.named.get("unet", p.positional[2] if len(p.positional) > 2 else te))
        except ValueError:
            warnings.append(f"<lora:{':'.join(p.items)}>: weights must be numbers; the tag was ignored")
            continue
        if not (abs(te) < float("inf") and abs(unet) < float("inf")):
            warnings.append(f"<lora:{':'.join(p.items)}>: weights must be finite; the tag was ignored")
            continue
        requests.append(NetworkRequest(name, te, unet))
    return requests, warnings


class AppliedNetworks:
    """LoRA deltas merged into a model, with the original weights kept to restore them exactly."""

    def __init__(self, model):
        self.model = model
        self.active: list[tuple[NetworkRequest, LoraFile]] = []
        self._originals: dict[int, tuple[torch.nn.Parameter, torch.Tensor]] = {}
        self._layer_cache: dict[str, tuple[tuple, list[LoraLayer], list[str]]] = {}

    @property
    def text_encoder_changed(self) -> bool:
        return any(req.te_multiplier != 0 for req, _ in self.active)

    def _layers(self, lora: LoraFile) -> tuple[list[LoraLayer], list[str]]:
        stat = os.stat(lora.filename)
        stamp = (stat.st_mtime_ns, stat.st_size)
        cached = self._layer_cache.get(lora.filename)
        if cached is None or cached[0] != stamp:
            layers, unsupported = lora_layers(read_lora_file(lora.filename))
            cached = (stamp, layers, unsupported)
            self._layer_cache[lora.filename] = cached
        return cached[1], cached[2]

    def apply(self, requests: list[NetworkRequest], available: dict[str, LoraFile]) -> list[str]:
        """Restore, then merge `requests`; returns warnings (unknown names, unmatched layers, unsupported keys)."""
        self.restore()
        warnings = []
        index = module_index(self.model) if requests else {}
        for request in requests:
            lora = available.get(request.name)
            if lora is None:
                warnings.append(f"LoRA {request.name!r} not found (looked for {request.name}.safetensors in the Lora folder)")
                continue
            try:
                layers, unsupported = self._layers(lora)
                applied, unmatched = self._merge(layers, request, index)
            except (ValueError, OSError, RuntimeError) as error:
                warnings.append(f"LoRA {request.name!r} could not be applied: {error}")
                continue
            if unsupported:
                warnings.append(f"LoRA {request.name!r}: {len(unsupported)} keys in formats Easel does not apply "
                                f"(e.g. {unsupported[0]}); they were skipped")
            if unmatched:
                warnings.append(f"LoRA {request.name!r}: {len(unmatched)} layers match nothing in this model "
                                f"(e.g. {unmatched[0]}); made for another model type?")
            if applied:
                self.active.append((request, lora))
        return warnings

    def _merge(self, layers: list[LoraLayer], request: NetworkRequest, index) -> tuple[int, list[str]]:
        applied, unmatched = 0, []
        for layer in layers:
            module = index.get(layer.component, {}).get(layer.name)
            if module is None:
                unmatched.append(f"{layer.component}:{layer.name}")
                continue
            multiplier = request.unet_multiplier if layer.component == "unet" else request.te_multiplier
            if multiplier == 0:
                continue
            weight = module.weight
            delta = layer.delta(weight.shape).to(weight.device) * multiplier
            with torch.no_grad():
                if id(weight) not in self._originals:
                    self._originals[id(weight)] = (weight, weight.detach().clone())
                weight.copy_((weight.float() + delta).to(weight.dtype))
            applied += 1
        return applied, unmatched

    def restore(self) -> None:
        """Copy every changed weight back from its saved original (exact)."""
        with torch.no_grad():
            for weight, original in self._originals.values():
                weight.copy_(original)
        self._originals.clear()
        self.active = []

    def infotext_hashes(self) -> str | None:
        """`Lora hashes` value: "name: hash12, ..." of the networks in use."""
        if not self.active:
            return None
        return ", ".join(f"{request.name}: {lora.shorthash()}" for request, lora in self.active)


def lora_dir() -> Path:
    from modules import shared

    if shared.paths is None:
        raise ValueError("LoRA folder: the app's paths are not set up (modules.shared.paths)")
    return Path(shared.paths.lora_dir)
