"""Model families: one declarative row per family, recognised from state-dict keys and shapes.

Detection works on the ORIGINAL single-file layout (`model.diffusion_model.*`,
`cond_stage_model.*`, `conditioner.embedders.N.*`, `first_stage_model.*`). It
only needs key -> shape, so callers can pass shapes read lazily from a
.safetensors header (no tensor data is loaded to detect a family).

Each family's `rules` are data (`Has`, `Lacks`, `Dim`), checked in registry
order; the rows are written so that no two can match the same state dict
(tests/test_model_families.py asserts it). Adding a family = adding a row and
a configs/<config_dir>/ folder.

Overrides beside a checkpoint (NAME = checkpoint file name without extension,
or the diffusers folder name):

* ``NAME.json``: ``{"family": "<family id>"}``, e.g. ``{"family": "sd2-v"}``.
  Optional ``"prediction_type": "epsilon" | "v_prediction"`` overrides only the
  prediction type of the chosen family, optional ``"zero_terminal_snr": true``
  its noise schedule. Unknown ids/values raise ValueError.
* ``NAME.yaml``: an original LDM/SGM inference config, as A1111 reads it. Used
  fields: ``model.target`` (``sgm...DiffusionEngine`` = SDXL),
  ``model.params.cond_stage_config.target`` (``FrozenCLIPEmbedder`` = SD1,
  ``FrozenOpenCLIPEmbedder`` = SD2), ``model.params.parameterization``
  (``"v"`` = v-prediction), ``model.params.unet_config.params.in_channels`` or
  ``model.params.network_config.params.in_channels`` (9 = inpainting).

v-prediction cannot be seen in the weights. A ``v_pred`` key in the state dict
(the marker ComfyUI writes into saved v-prediction checkpoints) selects it;
otherwise an override file does; otherwise the epsilon family is chosen.
Zero terminal SNR (a model trained on a schedule whose last step is pure
noise) is marked the same way, by a ``ztsnr`` key (ComfyUI's marker), by
``"zero_terminal_snr": true`` in NAME.json, or by ``rescale_betas_zero_snr`` in
a diffusers folder's scheduler config; modules/noise_schedule.py applies it.
"""
from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from typing import Mapping, Sequence

UNET_IN = "model.diffusion_model.input_blocks.0.0.weight"
CLIP_L_TOKENS = "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight"
OPEN_CLIP_TOKENS = "cond_stage_model.model.token_embedding.weight"
SDXL_CLIP_L_TOKENS = "conditioner.embedders.0.transformer.text_model.embeddings.token_embedding.weight"
SDXL_OPEN_CLIP_TOKENS = "conditioner.embedders.1.model.token_embedding.weight"
V_PRED_MARKER = "v_pred"
ZTSNR_MARKER = "ztsnr"
DEMO_TEXT_WIDTH = 128  # the shipped demo model's text encoder width (configs/easel-demo/text_encoder)

SD_LATENT_RGB = ((0.298, 0.207, 0.208), (0.187, 0.286, 0.173), (-0.158, 0.189, 0.264), (-0.184, -0.271, -0.473))
SDXL_LATENT_RGB = ((0.3448, 0.4168, 0.4395), (-0.1953, -0.0290, 0.0250), (0.1074, 0.0886, -0.0163), (-0.3730, -0.2499, -0.2088))

# Pad tokens per text encoder: OpenAI CLIP (SD1, SDXL's first encoder) pads with the
# end token; OpenCLIP (SD2, SDXL's second encoder) pads with token 0, "!".
END_PAD = "<|endoftext|>"
ZERO_PAD = "!"


class UnknownModelError(ValueError):
    """No family row matched a state dict; the message lists what each row looked for."""


@dataclass(frozen=True)
class Has:
    key: str

    def check(self, shapes: Mapping[str, Sequence[int]]) -> bool:
        return self.key in shapes

    def __str__(self):
        return f"has key {self.key}"


@dataclass(frozen=True)
class Lacks:
    key: str

    def check(self, shapes):
        return self.key not in shapes

    def __str__(self):
        return f"lacks key {self.key}"


@dataclass(frozen=True)
class Dim:
    """shape[index] of `key` compared with `value` (op "==" or "!="); a missing key fails."""
    key: str
    index: int
    op: str
    value: int

    def check(self, shapes):
        shape = shapes.get(self.key)
        if shape is None or len(shape) <= self.index:
            return False
        size = int(shape[self.index])
        return size == self.value if self.op == "==" else size != self.value

    def __str__(self):
        return f"{self.key} dim {self.index} {self.op} {self.value}"


@dataclass(frozen=True)
class ModelFamily:
    id: str
    label: str
    config_dir: str             # folder under configs/ in diffusers layout
    architecture: str           # "sd1" | "sd2" | "sdxl" | "easel-demo": what NAME.yaml targets map to
    native_size: int
    latent_channels: int
    vae_scale_factor: int       # spatial downscale of the VAE
    prediction_type: str        # "epsilon" | "v_prediction"
    zero_terminal_snr: bool     # trained on a schedule rescaled so its last step is pure noise
    conditioning: str           # "clip" (one encoder) | "sdxl" (two encoders, pooled, time ids)
    inpainting: bool            # U-Net takes 9 channels (latent + mask + masked latent)
    latent_rgb_factors: tuple   # 4x3 latent -> RGB preview matrix
    pad_tokens: tuple           # pad token per text encoder, in encoder order
    text_layouts: tuple         # original layout per text encoder: "clip-l" | "open-clip", with its key prefix
    rules: tuple                # Has/Lacks/Dim, all must hold

    def matches(self, shapes: Mapping[str, Sequence[int]]) -> bool:
        return all(rule.check(shapes) for rule in self.rules)

    def first_failed_rule(self, shapes):
        return next((rule for rule in self.rules if not rule.check(shapes)), None)


def _family(**kw) -> ModelFamily:
    defaults = dict(latent_channels=4, vae_scale_factor=8, prediction_type="epsilon", zero_terminal_snr=False,
                    conditioning="clip",
                    inpainting=False, latent_rgb_factors=SD_LATENT_RGB)
    return ModelFamily(**{**defaults, **kw})


_SD1_TEXT = (("clip-l", "cond_stage_model.transformer."),)
_SD2_TEXT = (("open-clip", "cond_stage_model.model."),)
_SDXL_TEXT = (("clip-l", "conditioner.embedders.0.transformer."), ("open-clip", "conditioner.embedders.1.model."))

FAMILIES: list[ModelFamily] = [
    _family(id="sd1", label="Stable Diffusion 1.x", config_dir="sd1", architecture="sd1", native_size=512,
            pad_tokens=(END_PAD,), text_layouts=_SD1_TEXT,
            rules=(Has(CLIP_L_TOKENS), Dim(CLIP_L_TOKENS, 1, "!=", DEMO_TEXT_WIDTH), Dim(UNET_IN, 1, "==", 4))),
    _family(id="sd1-inpaint", label="Stable Diffusion 1.x inpainting", config_dir="sd1", architecture="sd1",
            native_size=512, inpainting=True, pad_tokens=(END_PAD,), text_layouts=_SD1_TEXT,
            rules=(Has(CLIP_L_TOKENS), Dim(UNET_IN, 1, "==", 9))),
    _family(id="sd2", label="Stable Diffusion 2.x (512, epsilon)", config_dir="sd2", architecture="sd2",
            native_size=512, pad_tokens=(ZERO_PAD,), text_layouts=_SD2_TEXT,
            rules=(Has(OPEN_CLIP_TOKENS), Dim(UNET_IN, 1, "==", 4), Lacks(V_PRED_MARKER))),
    _family(id="sd2-v", label="Stable Diffusion 2.x (768, v-prediction)", config_dir="sd2-v", architecture="sd2",
            native_size=768, prediction_type="v_prediction", pad_tokens=(ZERO_PAD,), text_layouts=_SD2_TEXT,
            rules=(Has(OPEN_CLIP_TOKENS), Dim(UNET_IN, 1, "==", 4), Has(V_PRED_MARKER))),
    _family(id="sd2-inpaint", label="Stable Diffusion 2.x inpainting", config_dir="sd2", architecture="sd2",
            native_size=512, inpainting=True, pad_tokens=(ZERO_PAD,), text_layouts=_SD2_TEXT,
            rules=(Has(OPEN_CLIP_TOKENS), Dim(UNET_IN, 1, "==", 9))),
    _family(id="sdxl", label="Stable Diffusion XL", config_dir="sdxl", architecture="sdxl", native_size=1024,
            conditioning="sdxl", latent_rgb_factors=SDXL_LATENT_RGB, pad_tokens=(END_PAD, ZERO_PAD),
            text_layouts=_SDXL_TEXT,
            rules=(Has(SDXL_CLIP_L_TOKENS), Has(SDXL_OPEN_CLIP_TOKENS), Dim(UNET_IN, 1, "==", 4))),
    _family(id="sdxl-inpaint", label="Stable Diffusion XL inpainting", config_dir="sdxl", architecture="sdxl",
            native_size=1024, conditioning="sdxl", inpainting=True, latent_rgb_factors=SDXL_LATENT_RGB,
            pad_tokens=(END_PAD, ZERO_PAD), text_layouts=_SDXL_TEXT,
            rules=(Has(SDXL_CLIP_L_TOKENS), Has(SDXL_OPEN_CLIP_TOKENS), Dim(UNET_IN, 1, "==", 9))),
    # The shipped demo model: SD1 key layout, 128-wide text encoder, f=2 VAE. Its
    # preview matrix is SD's until the trainer fits one for its own VAE.
    _family(id="easel-demo", label="Easel demo model", config_dir="easel-demo", architecture="easel-demo",
            native_size=64, vae_scale_factor=2, pad_tokens=(END_PAD,), text_layouts=_SD1_TEXT,
            rules=(Has(CLIP_L_TOKENS), Dim(CLIP_L_TOKENS, 1, "==", DEMO_TEXT_WIDTH), Dim(UNET_IN, 1, "==", 4))),
]

FAMILIES_BY_ID = {family.id: family for family in FAMILIES}


def get_family(family_id: str) -> ModelFamily:
    if family_id not in FAMILIES_BY_ID:
        raise ValueError(f"unknown model family {family_id!r}; known: {', '.join(FAMILIES_BY_ID)}")
    return FAMILIES_BY_ID[family_id]


def detect_family(shapes: Mapping[str, Sequence[int]]) -> ModelFamily:
    """The first registry row whose rules all hold for `shapes` (key -> shape, original layout)."""
    for family in FAMILIES:
        if family.matches(shapes):
            if V_PRED_MARKER in shapes and family.prediction_type == "epsilon":
                # A v_pred marker on a family without its own v row (e.g. SDXL v-pred fine-tunes).
                family = dataclasses.replace(family, prediction_type="v_prediction")
            if ZTSNR_MARKER in shapes:
                family = dataclasses.replace(family, zero_terminal_snr=True)
            return family
    looked_for = "\n".join(f"  {f.id}: needs {'; '.join(map(str, f.rules))} -- failed on: {f.first_failed_rule(shapes)}"
                           for f in FAMILIES)
    sample = ", ".join(sorted(shapes)[:5])
    raise UnknownModelError(f"no known model family matches this checkpoint ({len(shapes)} keys, e.g. {sample}). "
                            f"Looked for:\n{looked_for}")


def find_family(architecture: str, inpainting: bool, prediction_type: str) -> ModelFamily:
    """The registry row for an architecture/inpainting/prediction combination (used by overrides)."""
    candidates = [f for f in FAMILIES if f.architecture == architecture and f.inpainting == inpainting]
    if not candidates:
        raise ValueError(f"no model family for architecture={architecture!r} inpainting={inpainting}")
    exact = [f for f in candidates if f.prediction_type == prediction_type]
    if exact:
        return exact[0]
    return dataclasses.replace(candidates[0], prediction_type=prediction_type)


PREDICTION_TYPES = ("epsilon", "v_prediction")


def override_paths(checkpoint_path: str) -> tuple[str, str]:
    """(NAME.yaml, NAME.json) beside a checkpoint file or diffusers folder."""
    base = checkpoint_path.rstrip("/\\")
    stem, ext = os.path.splitext(base)
    if ext.lower() not in (".safetensors", ".ckpt", ".pt", ".pth", ".bin"):
        stem = base
    return stem + ".yaml", stem + ".json"


def family_from_override(checkpoint_path: str) -> ModelFamily | None:
    """The family named by NAME.json or NAME.yaml beside the checkpoint, or None when there is neither."""
    yaml_path, json_path = override_paths(checkpoint_path)
    if os.path.isfile(json_path):
        return _family_from_json(json_path)
    if os.path.isfile(yaml_path):
        return _family_from_yaml(yaml_path)
    return None


def _family_from_json(path: str) -> ModelFamily:
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    if not isinstance(data, dict) or "family" not in data:
        raise ValueError(f"{path}: expected an object with a \"family\" field, e.g. {{\"family\": \"sd2-v\"}}")
    family = get_family(data["family"])
    prediction = data.get("prediction_type")
    if prediction is not None:
        if prediction not in PREDICTION_TYPES:
            raise ValueError(f"{path}: prediction_type {prediction!r} is not one of {PREDICTION_TYPES}")
        family = dataclasses.replace(family, prediction_type=prediction)
    zero_terminal_snr = data.get("zero_terminal_snr")
    if zero_terminal_snr is not None:
        if not isinstance(zero_terminal_snr, bool):
            raise ValueError(f"{path}: zero_terminal_snr must be true or false, not {zero_terminal_snr!r}")
        family = dataclasses.replace(family, zero_terminal_snr=zero_terminal_snr)
    return family


def _family_from_yaml(path: str) -> ModelFamily:
    import yaml

    with open(path, encoding="utf-8") as f:
        config = yaml.safe_load(f) or {}
    model = config.get("model") or {}
    params = model.get("params") or {}
    target = str(model.get("target", ""))
    cond_target = str((params.get("cond_stage_config") or {}).get("target", ""))
    if "DiffusionEngine" in target or "conditioner_config" in params:
        architecture = "sdxl"
    elif "FrozenOpenCLIPEmbedder" in cond_target:
        architecture = "sd2"
    elif "FrozenCLIPEmbedder" in cond_target:
        architecture = "sd1"
    else:
        raise ValueError(f"{path}: cannot tell the model family from model.target={target!r} and "
                         f"model.params.cond_stage_config.target={cond_target!r}")
    net = params.get("unet_config") or params.get("network_config") or {}
    in_channels = int((net.get("params") or {}).get("in_channels", 4))
    if in_channels not in (4, 9):
        raise ValueError(f"{path}: unet in_channels={in_channels} is neither 4 (txt2img) nor 9 (inpainting)")
    parameterization = params.get("parameterization", "eps")
    if parameterization not in ("eps", "v"):
        raise ValueError(f"{path}: model.params.parameterization={parameterization!r} is neither 'eps' nor 'v'")
    prediction = "v_prediction" if parameterization == "v" else "epsilon"
    return find_family(architecture, in_channels == 9, prediction)
