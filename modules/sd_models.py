"""List, hash and load Stable Diffusion checkpoints (single-file .safetensors/.ckpt and diffusers folders).

Loading a single file:
1. read key -> shape without loading tensors (safetensors header; .ckpt via a
   memory-mapped, weights-only torch.load),
2. pick the family (NAME.json / NAME.yaml override, else the registry in
   modules/model_families.py),
3. take the family's diffusers configs from configs/<family.config_dir>/ and
   replace sizes with what the weights' shapes say (so small models with the
   real key layout load through the same code),
4. convert keys with diffusers' single-file utilities, reading each tensor once
   and casting it to the target dtype as it is read,
5. build each network on the meta device and assign the tensors
   (load_state_dict(assign=True)): no second copy of the weights exists, and
   each component's raw tensors are released once it is built.

Hashes are A1111's: sha256 of the file, shorthash = first 10 hex. They are
cached in a JSON file (cache.json in the data dir, or the path given) keyed by
path and checked against mtime and size, so each file is read once.
"""
from __future__ import annotations

import gc
import json
import logging
import os
import re
import types
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import torch

from modules import model_families, noise_schedule
from modules.model_families import ModelFamily

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
CONFIGS_DIR = ROOT / "configs"
TOKENIZER_DIR = CONFIGS_DIR / "clip-tokenizer"
CHECKPOINT_EXTENSIONS = (".safetensors", ".ckpt")
UNET_PREFIX = "model.diffusion_model."

# ---------------------------------------------------------------- listing and hashing (modules/checkpoints.py)

from modules import checkpoints as _checkpoints  # noqa: E402
from modules.checkpoints import (  # noqa: E402,F401  (A1111 names live here too)
    CheckpointInfo, cached_sha256, checkpoints_list, default_cache_path, get_checkpoint, list_checkpoints,
)


def __getattr__(name):
    if name == "hash_file_reads":  # a live counter: read it from where it is kept
        return _checkpoints.hash_file_reads
    raise AttributeError(name)


# ---------------------------------------------------------------- reading state dicts

class UnsafeCheckpointError(RuntimeError):
    """A .ckpt pickle that needs to run code to load; it is refused."""


class CheckpointTensors:
    """Lazy original-layout state dict: key -> shape up front, tensors read (and cast) on first access.

    Quacks like the dict that diffusers' convert_* functions expect (keys, get, [], in).
    A tensor read once is kept so a second access is free; `release()` drops them all.
    """

    def __init__(self, path: str, dtype: torch.dtype | None = None):
        self.path = path
        self.dtype = dtype
        self._file = None
        self._raw: dict = {}
        self._read: dict = {}
        if path.endswith(".safetensors"):
            # Read tensors with plain reads rather than safetensors' mmap: mmapped pages count as this
            # process's resident memory until dropped, which would double the loading peak.
            self._file = open(path, "rb")
            self._header, self._header_size = _safetensors_header(self._file)
            self.shapes = {k: tuple(v["shape"]) for k, v in self._header.items() if k != "__metadata__"}
        else:
            self._raw = _load_pickle_weights_only(path)
            self.shapes = {k: tuple(v.shape) for k, v in self._raw.items()}

    def keys(self):
        return self.shapes.keys()

    def __iter__(self):
        return iter(self.shapes)

    def __len__(self):
        return len(self.shapes)

    def __contains__(self, key):
        return key in self.shapes

    def __getitem__(self, key):
        if key in self._read:
            return self._read[key]
        if key not in self.shapes:
            raise KeyError(key)
        tensor = self._read_safetensors(key) if self._file is not None else self._raw.pop(key)
        if self.dtype is not None and tensor.is_floating_point() and tensor.dtype != self.dtype:
            tensor = tensor.to(self.dtype)
        elif self._file is None:
            tensor = tensor.clone()  # detach from the memory-mapped file
        self._read[key] = tensor
        return tensor

    def get(self, key, default=None):
        return self[key] if key in self.shapes else default

    def _read_safetensors(self, key):
        entry = self._header[key]
        start, end = entry["data_offsets"]
        dtype = SAFETENSORS_DTYPES.get(entry["dtype"])
        if dtype is None:
            raise ValueError(f"{self.path}: tensor {key} has unsupported dtype {entry['dtype']}")
        buffer = bytearray(end - start)
        self._file.seek(self._data_start + start)
        if self._file.readinto(buffer) != len(buffer):
            raise ValueError(f"{self.path}: file ends inside tensor {key} (truncated download?)")
        if not buffer:
            return torch.empty(entry["shape"], dtype=dtype)
        return torch.frombuffer(buffer, dtype=dtype).reshape(entry["shape"])

    @property
    def _data_start(self):
        return 8 + self._header_size

    def release(self):
        self._read.clear()
        self._raw.clear()
        if self._file is not None:
            self._file.close()
            self._file = None
        gc.collect()


SAFETENSORS_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
                      "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
                      "BOOL": torch.bool}


def _safetensors_header(file) -> tuple[dict, int]:
    """The JSON header of a .safetensors file: 8-byte little-endian length, then {name: {dtype, shape, data_offsets}}."""
    import struct

    raw_len = file.read(8)
    if len(raw_len) != 8:
        raise ValueError(f"{file.name}: too short to be a .safetensors file")
    (size,) = struct.unpack("<Q", raw_len)
    if size > 100 * 2**20:
        raise ValueError(f"{file.name}: .safetensors header claims {size} bytes; the file is damaged")
    try:
        header = json.loads(file.read(size))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{file.name}: .safetensors header is not valid JSON ({err})") from None
    return header, size


def _load_pickle_weights_only(path: str) -> dict:
    """torch.load a .ckpt with weights_only=True (no code runs); unwrap `state_dict`; keep tensors only."""
    import pickle

    try:
        try:
            data = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as err:
            if "mmap" not in str(err) and "zip" not in str(err):
                raise
            data = torch.load(path, map_location="cpu", weights_only=True)  # legacy (non-zip) pickle format
    except pickle.UnpicklingError as err:
        raise UnsafeCheckpointError(
            f"refused to load {path}: this pickle would need to run code (import or call Python objects) to "
            f"load, which only plain tensors should need. It may be malicious. Use a .safetensors version of "
            f"this model instead. Details: {str(err).splitlines()[0]}") from None
    if isinstance(data, dict) and isinstance(data.get("state_dict"), dict):
        data = data["state_dict"]
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a dict of tensors, found {type(data).__name__}")
    return {k: v for k, v in data.items() if isinstance(v, torch.Tensor)}


# ---------------------------------------------------------------- configs from the family + shapes

def read_config(family: ModelFamily, component: str) -> dict:
    """configs/<family.config_dir>/<component>/config.json (scheduler: scheduler_config.json)."""
    name = "scheduler_config.json" if component == "scheduler" else "config.json"
    path = CONFIGS_DIR / family.config_dir / component / name
    if not path.is_file():
        raise FileNotFoundError(f"family {family.id} has no {component} config at {path}")
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _count(shapes, pattern: str) -> int:
    """Number of distinct values of the (\\d+) group in keys matching `pattern` at their start."""
    regex = re.compile(pattern)
    return len({m.group(1) for k in shapes if (m := regex.match(k))})


def infer_unet_config(shapes: dict, base: dict, pooled_dim: int | None = None) -> dict:
    """The family's U-Net config with channel counts and depths replaced by what the LDM shapes say.

    `shapes` are original-layout keys WITHOUT the model.diffusion_model. prefix.
    """
    config = {k: v for k, v in base.items() if not k.startswith("_")}
    model_channels, in_channels = shapes["input_blocks.0.0.weight"][:2]
    n_input = _count(shapes, r"input_blocks\.(\d+)\.")
    n_down = sum(f"input_blocks.{i}.0.op.weight" in shapes for i in range(n_input))
    levels = n_down + 1
    per_level = (n_input - 1 - n_down) // levels + 1
    block_out, down_types, depths = [], [], []
    for level in range(levels):
        first = 1 + level * per_level
        block_out.append(shapes[f"input_blocks.{first}.0.out_layers.3.weight"][0])
        depth = _count(shapes, rf"input_blocks\.{first}\.1\.transformer_blocks\.(\d+)\.")
        down_types.append("CrossAttnDownBlock2D" if depth else "DownBlock2D")
        depths.append(depth or 1)
    up_types = ["CrossAttnUpBlock2D" if _count(shapes, rf"output_blocks\.{b * per_level}\.1\.transformer_blocks\.(\d+)\.")
                else "UpBlock2D" for b in range(levels)]
    to_k = next((shape for k, shape in shapes.items() if k.endswith("attn2.to_k.weight")), None)
    proj_in = next((shape for k, shape in shapes.items() if k.endswith(".proj_in.weight")), None)
    config.update(in_channels=in_channels, out_channels=shapes["out.2.weight"][0], block_out_channels=block_out,
                  layers_per_block=per_level - 1, down_block_types=down_types, up_block_types=up_types)
    if to_k is not None:
        config["cross_attention_dim"] = to_k[1]
        config["use_linear_projection"] = len(proj_in) == 2
    if depths != [1] * levels or "transformer_layers_per_block" in config:
        config["transformer_layers_per_block"] = depths
    if block_out != base.get("block_out_channels"):
        if isinstance(base.get("attention_head_dim"), list):  # SD2/SDXL meaning: 64-wide heads
            config["attention_head_dim"] = [max(1, c // 64) for c in block_out]
    if block_out[0] != model_channels:
        raise ValueError(f"U-Net: input_blocks.0.0 has {model_channels} channels but the first block has {block_out[0]}")
    if "label_emb.0.0.weight" in shapes:
        projection_in = shapes["label_emb.0.0.weight"][1]
        if projection_in != base.get("projection_class_embeddings_input_dim"):
            if pooled_dim is None or (projection_in - pooled_dim) % 6:
                raise ValueError(f"U-Net label_emb takes {projection_in} inputs; cannot split it into the pooled "
                                 f"text embedding ({pooled_dim}) and 6 time ids")
            config["addition_time_embed_dim"] = (projection_in - pooled_dim) // 6
        config["projection_class_embeddings_input_dim"] = projection_in
    return config


def infer_vae_config(shapes: dict, base: dict) -> dict:
    """The family's VAE config with sizes from LDM VAE shapes (keys WITHOUT first_stage_model.)."""
    config = {k: v for k, v in base.items() if not k.startswith("_")}
    levels = _count(shapes, r"encoder\.down\.(\d+)\.")
    config.update(
        in_channels=shapes["encoder.conv_in.weight"][1],
        out_channels=shapes["decoder.conv_out.weight"][0],
        latent_channels=shapes["decoder.conv_in.weight"][1],
        block_out_channels=[shapes[f"encoder.down.{i}.block.0.conv1.weight"][0] for i in range(levels)],
        layers_per_block=_count(shapes, r"encoder\.down\.0\.block\.(\d+)\."),
        down_block_types=["DownEncoderBlock2D"] * levels,
        up_block_types=["UpDecoderBlock2D"] * levels,
    )
    if "encoder.mid.attn_1.q.weight" not in shapes:
        config["mid_block_add_attention"] = False
    return config


def infer_clip_config(shapes: dict, base: dict) -> dict:
    """The family's CLIP text config with sizes from transformers-layout shapes (no `text_model.`)."""
    config = {k: v for k, v in base.items() if not k.startswith("_")}
    vocab, width = shapes["embeddings.token_embedding.weight"]
    config.update(vocab_size=vocab, hidden_size=width,
                  max_position_embeddings=shapes["embeddings.position_embedding.weight"][0],
                  num_hidden_layers=_count(shapes, r"encoder\.layers\.(\d+)\."),
                  intermediate_size=shapes["encoder.layers.0.mlp.fc1.weight"][0])
    if width != base.get("hidden_size"):
        config["num_attention_heads"] = max(1, width // 64)  # CLIP text encoders use 64-wide heads
    if "text_projection.weight" in shapes:
        config["projection_dim"] = shapes["text_projection.weight"][0]
    return config


# ---------------------------------------------------------------- building networks

def _build(cls, config: dict, state_dict: dict, what: str, from_config=True):
    """Make `cls` on the meta device and assign `state_dict`'s tensors as its parameters (no copy)."""
    from accelerate import init_empty_weights

    with init_empty_weights():
        model = cls.from_config(config) if from_config else cls(config)
    expected = model.state_dict().keys()
    missing = [k for k in expected if k not in state_dict]
    if missing:
        raise ValueError(f"{what}: the checkpoint lacks {len(missing)} weights the model needs, e.g. {missing[:5]}")
    unexpected = [k for k in state_dict if k not in expected]
    if unexpected:
        log.info("%s: ignoring %d checkpoint tensors the model does not use, e.g. %s", what, len(unexpected), unexpected[:3])
    model.load_state_dict({k: state_dict[k] for k in expected}, strict=True, assign=True)
    return model.eval().requires_grad_(False)


def _build_clip(hf_state: dict, base_config: dict, what: str):
    """transformers CLIP text model from converted weights (keys with or without `text_model.`)."""
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    flat = {k.removeprefix("text_model."): v for k, v in hf_state.items() if not k.endswith("position_ids")}
    with_projection = base_config.get("architectures", ["CLIPTextModel"])[0] == "CLIPTextModelWithProjection"
    if not with_projection:
        flat.pop("text_projection.weight", None)  # SD2 checkpoints carry OpenCLIP's unused projection
    config = CLIPTextConfig(**infer_clip_config({k: tuple(v.shape) for k, v in flat.items()}, base_config))
    if with_projection:
        wrapped = {(k if k == "text_projection.weight" else f"text_model.{k}"): v for k, v in flat.items()}
        return _build(CLIPTextModelWithProjection, config, wrapped, what, from_config=False)
    return _build(CLIPTextModel, config, flat, what, from_config=False)


@lru_cache(maxsize=4)
def load_tokenizer(pad_token: str):
    """CLIP BPE tokenizer from configs/clip-tokenizer; SD1/SDXL-1 pad with the end token, OpenCLIP with "!"."""
    from modules import ml_imports

    ml_imports.ensure()
    from transformers import CLIPTokenizer

    return CLIPTokenizer(vocab=str(TOKENIZER_DIR / "vocab.json"), merges=str(TOKENIZER_DIR / "merges.txt"),
                         pad_token=pad_token, model_max_length=77)


def scheduler_config_for(family: ModelFamily) -> dict:
    """The family's scheduler config with the checkpoint's prediction type and, for a
    zero-terminal-SNR model, the rescaled schedule as explicit betas (every sampler honours those)."""
    config = {k: v for k, v in read_config(family, "scheduler").items() if not k.startswith("_")}
    config["prediction_type"] = family.prediction_type
    config.pop("rescale_betas_zero_snr", None)
    if family.zero_terminal_snr:
        config = noise_schedule.with_zero_terminal_snr(config)
    return config


@dataclass
class LoadedModel:
    checkpoint: CheckpointInfo
    family: ModelFamily
    unet: object
    vae: object
    text_encoders: list
    tokenizers: list
    scheduler_config: dict
    vae_scaling_factor: float
    device: torch.device
    dtype: torch.dtype
    vae_path: str | None = None   # external VAE file applied, None = the checkpoint's own
    offload_hooks: list = field(default_factory=list)   # modules.offload hooks (--medvram/--lowvram)

    def unload(self):
        """Drop the networks and give their memory back."""
        if getattr(self, "offload_hooks", None):
            from modules import offload

            offload.remove(self)    # the hooks' ring of references would keep the networks alive
        self.unet = self.vae = None
        self.text_encoders = []
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def detect_checkpoint_family(path: str, shapes: dict) -> ModelFamily:
    override = model_families.family_from_override(path)
    if override is not None:
        log.info("%s: family %s from the override file beside it", path, override.id)
        return override
    return model_families.detect_family(shapes)


def load_model(info, device="cpu", dtype=torch.float32, vae_path=None, vae_dtype=None) -> LoadedModel:
    """Load a checkpoint (CheckpointInfo or path) into diffusers/transformers modules on `device`."""
    from modules import ml_imports

    ml_imports.ensure()
    if not isinstance(info, CheckpointInfo):
        path = os.path.abspath(os.fspath(info))
        info = CheckpointInfo(path, os.path.basename(path))
    device = torch.device(device)
    if dtype == torch.float16 and device.type == "cpu":
        raise ValueError("fp16 on CPU is refused (about 1000x slower); use torch.float32 or torch.bfloat16")
    if info.is_diffusers:
        model = _load_diffusers_folder(info, dtype)
    else:
        model = _load_single_file(info, dtype)
    if vae_dtype is not None:
        model.vae.to(vae_dtype)
    if vae_path:
        from modules import sd_vae

        sd_vae.apply_vae(model, vae_path)
    for module in [model.unet, model.vae, *model.text_encoders]:
        module.to(device)
    model.device, model.dtype = device, dtype
    return model


def _load_single_file(info: CheckpointInfo, dtype) -> LoadedModel:
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from diffusers.loaders import single_file_utils as sfu

    tensors = CheckpointTensors(info.filename, dtype)
    try:
        family = detect_checkpoint_family(info.filename, tensors.shapes)
        unet_shapes = {k[len(UNET_PREFIX):]: s for k, s in tensors.shapes.items() if k.startswith(UNET_PREFIX)}
        vae_shapes = {k[len("first_stage_model."):]: s for k, s in tensors.shapes.items()
                      if k.startswith("first_stage_model.")}
        if not vae_shapes:
            raise ValueError(f"{info.filename}: no first_stage_model.* (VAE) weights in this checkpoint")

        text_encoders = []
        for index, (layout, prefix) in enumerate(family.text_layouts):
            component = "text_encoder" if index == 0 else f"text_encoder_{index + 1}"
            base = read_config(family, component)
            if layout == "clip-l":
                converted = sfu.convert_ldm_clip_checkpoint(_Prefixed(tensors, prefix), remove_prefix=prefix)
            else:
                width = tensors.shapes[prefix + "token_embedding.weight"][1]
                stand_in = types.SimpleNamespace(config=types.SimpleNamespace(hidden_size=width))
                converted = sfu.convert_open_clip_checkpoint(stand_in, _Prefixed(tensors, prefix), prefix=prefix)
            text_encoders.append(_build_clip(converted, base, f"{info.name}: {component}"))
            del converted
        pooled_dim = getattr(text_encoders[-1].config, "projection_dim", None) if family.conditioning == "sdxl" else None

        unet_config = infer_unet_config(unet_shapes, read_config(family, "unet"), pooled_dim)
        converted = sfu.convert_ldm_unet_checkpoint(_Prefixed(tensors, UNET_PREFIX), unet_config)
        unet = _build(UNet2DConditionModel, unet_config, converted, f"{info.name}: U-Net")
        del converted

        vae_base = read_config(family, "vae")
        vae_config = infer_vae_config(vae_shapes, vae_base)
        converted = sfu.convert_ldm_vae_checkpoint(_Prefixed(tensors, "first_stage_model."), vae_config)
        vae = _build(AutoencoderKL, vae_config, converted, f"{info.name}: VAE")
        del converted
    finally:
        tensors.release()
    return LoadedModel(checkpoint=info, family=family, unet=unet, vae=vae, text_encoders=text_encoders,
                       tokenizers=[load_tokenizer(pad) for pad in family.pad_tokens],
                       scheduler_config=scheduler_config_for(family),
                       vae_scaling_factor=float(vae_base.get("scaling_factor", 0.18215)),
                       device=torch.device("cpu"), dtype=dtype)


class _Prefixed:
    """A view of CheckpointTensors showing only keys under `prefix`, so a converter scans one component."""

    def __init__(self, tensors: CheckpointTensors, prefix: str):
        self._tensors = tensors
        self._keys = [k for k in tensors.keys() if k.startswith(prefix)]
        self._key_set = set(self._keys)

    def keys(self):
        return list(self._keys)

    def __iter__(self):
        return iter(self._keys)

    def __contains__(self, key):
        return key in self._key_set

    def __getitem__(self, key):
        if key not in self._key_set:
            raise KeyError(key)
        return self._tensors[key]

    def get(self, key, default=None):
        return self[key] if key in self._key_set else default


def diffusers_folder_shapes(folder: str) -> dict:
    """Original-layout key -> shape for a diffusers folder, via meta-device models (nothing is read)."""
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from modules import checkpoint_export

    def load_json(*parts):
        with open(os.path.join(folder, *parts), encoding="utf-8") as f:
            return json.load(f)

    with init_empty_weights():
        unet = UNet2DConditionModel.from_config(load_json("unet", "config.json"))
        vae = AutoencoderKL.from_config(load_json("vae", "config.json"))
        text_encoder = CLIPTextModel(CLIPTextConfig(**load_json("text_encoder", "config.json")))
        text_encoder_2 = None
        if os.path.isdir(os.path.join(folder, "text_encoder_2")):
            text_encoder_2 = CLIPTextModelWithProjection(CLIPTextConfig(**load_json("text_encoder_2", "config.json")))
    state = checkpoint_export.original_state_dict(unet, vae, text_encoder, text_encoder_2)
    shapes = {k: tuple(v.shape) for k, v in state.items()}
    scheduler_path = os.path.join(folder, "scheduler", "scheduler_config.json")
    scheduler = load_json("scheduler", "scheduler_config.json") if os.path.isfile(scheduler_path) else {}
    if scheduler.get("prediction_type") == "v_prediction":
        shapes[model_families.V_PRED_MARKER] = (0,)
    if scheduler.get("rescale_betas_zero_snr"):
        shapes[model_families.ZTSNR_MARKER] = (0,)
    return shapes


_ALIGNMENT = 64   # bytes: one cache line, what PyTorch's CPU allocator gives every tensor


def _copy_unaligned_tensors(module: torch.nn.Module) -> None:
    """Move weights that still point into a memory-mapped .safetensors file at an unaligned
    address into fresh memory.

    from_pretrained keeps weights whose stored dtype is the one asked for as views of the
    file mapping, at whatever offset the file's header left (8-byte aligned). oneDNN takes
    another code path for such weights: measured on an AMD EPYC, a tiny SD1 U-Net from a
    diffusers folder gave outputs 1.3e-6 away from the same weights in allocator memory,
    so the folder and the single-file copy of one model made different images."""
    for tensor in [*module.parameters(), *module.buffers()]:
        if tensor.device.type == "cpu" and tensor.numel() and tensor.data_ptr() % _ALIGNMENT:
            tensor.data = tensor.data.clone()


def _load_diffusers_folder(info: CheckpointInfo, dtype) -> LoadedModel:
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    folder = info.filename
    family = detect_checkpoint_family(folder, diffusers_folder_shapes(folder))
    kwargs = dict(torch_dtype=dtype, local_files_only=True)
    unet = UNet2DConditionModel.from_pretrained(folder, subfolder="unet", **kwargs)
    vae = AutoencoderKL.from_pretrained(folder, subfolder="vae", **kwargs)
    text_encoders = [CLIPTextModel.from_pretrained(os.path.join(folder, "text_encoder"), **kwargs)]
    if len(family.text_layouts) > 1:
        text_encoders.append(CLIPTextModelWithProjection.from_pretrained(os.path.join(folder, "text_encoder_2"), **kwargs))
    for module in [unet, vae, *text_encoders]:
        module.eval().requires_grad_(False)
        _copy_unaligned_tensors(module)
    return LoadedModel(checkpoint=info, family=family, unet=unet, vae=vae, text_encoders=text_encoders,
                       tokenizers=[load_tokenizer(pad) for pad in family.pad_tokens],
                       scheduler_config=scheduler_config_for(family),
                       vae_scaling_factor=float(vae.config.scaling_factor),
                       device=torch.device("cpu"), dtype=dtype)
