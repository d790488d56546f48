"""Write diffusers components back into the ORIGINAL single-file checkpoint layout.

This is the inverse of diffusers' single-file conversion
(`diffusers.loaders.single_file_utils.convert_ldm_*`), which has no inverse in
the package. The key facts (CompVis/SGM module names) are written here as data:

* U-Net -> ``model.diffusion_model.*``: diffusers down block b, layer j is LDM
  ``input_blocks.{1 + b*(L+1) + j}`` (L = layers per block; ``.0`` resnet,
  ``.1`` transformer), its downsampler is ``input_blocks.{1 + b*(L+1) + L}.0.op``;
  the mid block is ``middle_block.0/1/2``; up block b, layer j is
  ``output_blocks.{b*(L+1) + j}`` with the upsampler at ``.1.conv`` (no
  attention) or ``.2.conv`` (after a transformer).
* VAE -> ``first_stage_model.*``: ``down_blocks.i.resnets.j`` =
  ``down.i.block.j``; decoder up blocks are stored in reverse order
  (``up_blocks.i`` = ``up.{n-1-i}``); mid attention Linear weights become 1x1
  convs (``q/k/v/proj_out``).
* OpenAI CLIP (SD1, SDXL encoder 0) -> ``<prefix>text_model.*`` unchanged
  (transformers' own names).
* OpenCLIP (SD2, SDXL encoder 1) -> ``<prefix>transformer.resblocks.N.*`` with
  q/k/v fused into ``attn.in_proj_*``, ``positional_embedding``, ``ln_final``,
  and ``text_projection`` stored transposed (width x projection).

Which text layout is used: a second encoder means SDXL
(``conditioner.embedders.0.transformer.`` + ``conditioner.embedders.1.model.``);
otherwise a text encoder with ``hidden_act == "gelu"`` is OpenCLIP (SD2,
``cond_stage_model.model.``) and ``quick_gelu`` is OpenAI CLIP (SD1/demo,
``cond_stage_model.transformer.``) -- that activation is the real difference
between the two CLIP families.
"""
from __future__ import annotations

import os
import re

import torch

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
SD1_TEXT_PREFIX = "cond_stage_model.transformer."
SD2_TEXT_PREFIX = "cond_stage_model.model."
SDXL_TEXT_PREFIXES = ("conditioner.embedders.0.transformer.", "conditioner.embedders.1.model.")

UNET_TOP_LEVEL = {
    "time_embedding.linear_1": "time_embed.0",
    "time_embedding.linear_2": "time_embed.2",
    "conv_in": "input_blocks.0.0",
    "conv_norm_out": "out.0",
    "conv_out": "out.2",
    "add_embedding.linear_1": "label_emb.0.0",
    "add_embedding.linear_2": "label_emb.0.2",
}
UNET_RESNET_PARTS = {
    "norm1": "in_layers.0", "conv1": "in_layers.2", "time_emb_proj": "emb_layers.1",
    "norm2": "out_layers.0", "conv2": "out_layers.3", "conv_shortcut": "skip_connection",
}
VAE_TOP_LEVEL = {"encoder.conv_norm_out": "encoder.norm_out", "decoder.conv_norm_out": "decoder.norm_out"}
VAE_ATTENTION_PARTS = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}
OPEN_CLIP_LAYER_PARTS = {
    "layer_norm1": "ln_1", "layer_norm2": "ln_2", "mlp.fc1": "mlp.c_fc", "mlp.fc2": "mlp.c_proj",
    "self_attn.out_proj": "attn.out_proj",
}
OPEN_CLIP_TOP_LEVEL = {
    "embeddings.token_embedding.weight": "token_embedding.weight",
    "embeddings.position_embedding.weight": "positional_embedding",
    "final_layer_norm.weight": "ln_final.weight",
    "final_layer_norm.bias": "ln_final.bias",
}


def _split_param(rest: str) -> tuple[str, str]:
    module, _, param = rest.rpartition(".")
    return module, param


def unet_to_original(state_dict: dict, layers_per_block: int) -> dict:
    """diffusers UNet2DConditionModel state dict -> LDM names (without the model.diffusion_model. prefix)."""
    per_level = layers_per_block + 1
    up_blocks_with_attention = {int(m.group(1)) for k in state_dict
                                if (m := re.match(r"up_blocks\.(\d+)\.attentions\.", k))}
    out = {}
    for key, tensor in state_dict.items():
        out[_unet_key(key, per_level, up_blocks_with_attention)] = tensor
    return out


def _unet_key(key: str, per_level: int, up_blocks_with_attention: set) -> str:
    module, param = _split_param(key)
    if module in UNET_TOP_LEVEL:
        return f"{UNET_TOP_LEVEL[module]}.{param}"
    if m := re.fullmatch(r"down_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.+)", key):
        block, kind, layer, rest = int(m[1]), m[2], int(m[3]), m[4]
        index = 1 + block * per_level + layer
        return _unet_inner(f"input_blocks.{index}", kind, rest)
    if m := re.fullmatch(r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(\w+)", key):
        index = 1 + int(m[1]) * per_level + per_level - 1
        return f"input_blocks.{index}.0.op.{m[2]}"
    if m := re.fullmatch(r"mid_block\.(resnets|attentions)\.(\d+)\.(.+)", key):
        kind, layer, rest = m[1], int(m[2]), m[3]
        index = 1 if kind == "attentions" else 2 * layer  # resnet 0 -> 0, attention -> 1, resnet 1 -> 2
        return _unet_inner(f"middle_block.{index}", kind, rest)
    if m := re.fullmatch(r"up_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.+)", key):
        block, kind, layer, rest = int(m[1]), m[2], int(m[3]), m[4]
        return _unet_inner(f"output_blocks.{block * per_level + layer}", kind, rest)
    if m := re.fullmatch(r"up_blocks\.(\d+)\.upsamplers\.0\.conv\.(\w+)", key):
        block = int(m[1])
        slot = 2 if block in up_blocks_with_attention else 1
        return f"output_blocks.{block * per_level + per_level - 1}.{slot}.conv.{m[2]}"
    raise KeyError(f"no original-layout name for U-Net key {key!r}")


def _unet_inner(base: str, kind: str, rest: str) -> str:
    if kind == "attentions":
        return f"{base}.1.{rest}" if base.startswith(("input", "output")) else f"{base}.{rest}"
    module, param = _split_param(rest)
    if module not in UNET_RESNET_PARTS:
        raise KeyError(f"unknown U-Net resnet part {module!r} under {base}")
    suffix = f"{base}.0" if base.startswith(("input", "output")) else base
    return f"{suffix}.{UNET_RESNET_PARTS[module]}.{param}"


def vae_to_original(state_dict: dict) -> dict:
    """diffusers AutoencoderKL state dict -> LDM names (without the first_stage_model. prefix)."""
    levels = len({m[1] for k in state_dict if (m := re.match(r"decoder\.up_blocks\.(\d+)\.", k))})
    out = {}
    for key, tensor in state_dict.items():
        new_key, is_attention_linear = _vae_key(key, levels)
        if is_attention_linear and tensor.ndim == 2:
            tensor = tensor.reshape(*tensor.shape, 1, 1)  # Linear -> 1x1 conv, as LDM stores it
        out[new_key] = tensor
    return out


def _vae_key(key: str, levels: int) -> tuple[str, bool]:
    module, param = _split_param(key)
    if module in VAE_TOP_LEVEL:
        return f"{VAE_TOP_LEVEL[module]}.{param}", False
    if m := re.fullmatch(r"encoder\.down_blocks\.(\d+)\.resnets\.(\d+)\.(\w+)\.(\w+)", key):
        part = "nin_shortcut" if m[3] == "conv_shortcut" else m[3]
        return f"encoder.down.{m[1]}.block.{m[2]}.{part}.{m[4]}", False
    if m := re.fullmatch(r"encoder\.down_blocks\.(\d+)\.downsamplers\.0\.conv\.(\w+)", key):
        return f"encoder.down.{m[1]}.downsample.conv.{m[2]}", False
    if m := re.fullmatch(r"decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\.(\w+)\.(\w+)", key):
        part = "nin_shortcut" if m[3] == "conv_shortcut" else m[3]
        return f"decoder.up.{levels - 1 - int(m[1])}.block.{m[2]}.{part}.{m[4]}", False
    if m := re.fullmatch(r"decoder\.up_blocks\.(\d+)\.upsamplers\.0\.conv\.(\w+)", key):
        return f"decoder.up.{levels - 1 - int(m[1])}.upsample.conv.{m[2]}", False
    if m := re.fullmatch(r"(encoder|decoder)\.mid_block\.resnets\.(\d+)\.(\w+)\.(\w+)", key):
        part = "nin_shortcut" if m[3] == "conv_shortcut" else m[3]
        return f"{m[1]}.mid.block_{int(m[2]) + 1}.{part}.{m[4]}", False
    if m := re.fullmatch(r"(encoder|decoder)\.mid_block\.attentions\.0\.(.+)\.(\w+)", key):
        if m[2] not in VAE_ATTENTION_PARTS:
            raise KeyError(f"unknown VAE attention part in {key!r}")
        return f"{m[1]}.mid.attn_1.{VAE_ATTENTION_PARTS[m[2]]}.{m[3]}", m[2] != "group_norm" and m[3] == "weight"
    if re.fullmatch(r"(encoder|decoder)\.conv_(in|out)\.\w+|(post_)?quant_conv\.\w+", key):
        return key, False
    raise KeyError(f"no original-layout name for VAE key {key!r}")


def _text_model_keys(state_dict: dict) -> dict:
    """transformers CLIP keys without the optional `text_model.` wrapper, buffers dropped."""
    out = {}
    for key, tensor in state_dict.items():
        if key.endswith("position_ids"):
            continue
        out[key.removeprefix("text_model.")] = tensor
    return out


def clip_l_to_original(state_dict: dict) -> dict:
    """OpenAI CLIP text encoder -> the `transformer.text_model.*` names (prefix added by the caller)."""
    return {f"text_model.{k}" if k != "text_projection.weight" else k: v for k, v in _text_model_keys(state_dict).items()}


def open_clip_to_original(state_dict: dict) -> dict:
    """transformers CLIP text encoder -> OpenCLIP names (without the `...model.` prefix)."""
    sd = _text_model_keys(state_dict)
    out = {}
    fused: dict[tuple[int, str], dict[str, torch.Tensor]] = {}
    for key, tensor in sd.items():
        if key in OPEN_CLIP_TOP_LEVEL:
            out[OPEN_CLIP_TOP_LEVEL[key]] = tensor
        elif key == "text_projection.weight":
            out["text_projection"] = tensor.T.contiguous()  # OpenCLIP multiplies x @ P, Linear stores P^T
        elif m := re.fullmatch(r"encoder\.layers\.(\d+)\.self_attn\.(q|k|v)_proj\.(weight|bias)", key):
            fused.setdefault((int(m[1]), m[3]), {})[m[2]] = tensor
        elif m := re.fullmatch(r"encoder\.layers\.(\d+)\.(.+)\.(weight|bias)", key):
            if m[2] not in OPEN_CLIP_LAYER_PARTS:
                raise KeyError(f"no OpenCLIP name for text encoder key {key!r}")
            out[f"transformer.resblocks.{m[1]}.{OPEN_CLIP_LAYER_PARTS[m[2]]}.{m[3]}"] = tensor
        else:
            raise KeyError(f"no OpenCLIP name for text encoder key {key!r}")
    for (layer, param), parts in fused.items():
        out[f"transformer.resblocks.{layer}.attn.in_proj_{param}"] = torch.cat([parts["q"], parts["k"], parts["v"]])
    return out


def text_layout(text_encoder, text_encoder_2=None) -> list[tuple[str, str]]:
    """[(layout, prefix)] per text encoder: "clip-l" or "open-clip" with its original key prefix."""
    if text_encoder_2 is not None:
        return [("clip-l", SDXL_TEXT_PREFIXES[0]), ("open-clip", SDXL_TEXT_PREFIXES[1])]
    if text_encoder.config.hidden_act == "gelu":
        return [("open-clip", SD2_TEXT_PREFIX)]
    return [("clip-l", SD1_TEXT_PREFIX)]


def original_state_dict(unet, vae, text_encoder, text_encoder_2=None) -> dict:
    """All components under their original single-file names (tensors shared with the modules, not copied)."""
    out = {}
    for key, tensor in unet_to_original(unet.state_dict(), unet.config.layers_per_block).items():
        out[UNET_PREFIX + key] = tensor
    for key, tensor in vae_to_original(vae.state_dict()).items():
        out[VAE_PREFIX + key] = tensor
    encoders = [text_encoder] + ([text_encoder_2] if text_encoder_2 is not None else [])
    for encoder, (layout, prefix) in zip(encoders, text_layout(text_encoder, text_encoder_2)):
        convert = open_clip_to_original if layout == "open-clip" else clip_l_to_original
        for key, tensor in convert(encoder.state_dict()).items():
            out[prefix + key] = tensor
    return out


def export_original_checkpoint(unet, vae, text_encoder, path, text_encoder_2=None, dtype=None, extra_keys=None):
    """Save diffusers components as one original-layout checkpoint (.safetensors, or .ckpt/.pt via torch.save).

    dtype: cast floating tensors (e.g. torch.bfloat16); None keeps each tensor's dtype.
    extra_keys: {name: tensor} written as-is, e.g. {"v_pred": torch.tensor([])} to mark v-prediction.
    Written atomically (temp file + rename). Returns the path.
    """
    state = original_state_dict(unet, vae, text_encoder, text_encoder_2)
    for key, tensor in (extra_keys or {}).items():
        if key in state:
            raise ValueError(f"extra key {key!r} collides with a model weight")
        state[key] = tensor
    for key, tensor in state.items():
        if dtype is not None and tensor.is_floating_point():
            tensor = tensor.to(dtype)
        state[key] = tensor.detach().contiguous()
    path = os.fspath(path)
    tmp = path + ".tmp"
    if path.endswith(".safetensors"):
        from safetensors.torch import save_file

        save_file(_unshare(state), tmp, metadata={"format": "pt"})
    elif path.endswith((".ckpt", ".pt", ".pth")):
        torch.save(state, tmp)  # a plain dict of tensors: loads with weights_only=True
    else:
        raise ValueError(f"unsupported checkpoint extension for {path!r}: use .safetensors or .ckpt")
    os.replace(tmp, path)
    return path


def _unshare(state: dict) -> dict:
    """safetensors refuses tensors that share storage; clone the ones that do."""
    seen = set()
    out = {}
    for key, tensor in state.items():
        ptr = tensor.untyped_storage().data_ptr() if tensor.numel() else None
        if ptr in seen:
            tensor = tensor.clone()
        elif ptr is not None:
            seen.add(ptr)
        out[key] = tensor
    return out
