"""Tiny random Stable Diffusion models for tests, written in the real checkpoint formats.

    from tests.factories import make_tiny_checkpoint, make_tiny_components
    path = make_tiny_checkpoint(tmp_path, "sd1")                   # tmp_path/tiny-sd1.safetensors
    path = make_tiny_checkpoint(tmp_path, "sdxl", fmt="ckpt")      # original layout via torch.save
    path = make_tiny_checkpoint(tmp_path, "sd2-v", fmt="diffusers")  # folder with model_index.json
    model = modules.sd_models.load_model(path)                     # loads like a real checkpoint

Families: every id in modules.model_families.FAMILIES. The networks keep the
real key layout with small sizes: U-Net blocks (32, 64), one layer per block,
32 norm groups; VAE blocks (32, 64) (spatial factor 2, 4 latent channels);
CLIP text encoders 32 wide (128 for easel-demo, which is how it is
recognised), 2 layers, the real 49,408-token vocabulary so the shipped
tokenizer's ids work. Latents for a 64x64 image are 4x32x32. Weights are
random but fixed by `seed`. sd2-v single files carry the `v_pred` marker key;
sd2-v diffusers folders say v_prediction in scheduler/scheduler_config.json.
Each call takes a fraction of a second.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from modules import model_families
from modules.checkpoint_export import export_original_checkpoint

TEXT_WIDTH = 32
DEMO_TEXT_WIDTH = model_families.DEMO_TEXT_WIDTH
POOLED_DIM = 32          # SDXL's second encoder's projection size in the tiny models
TIME_ID_DIM = 8          # SDXL addition_time_embed_dim in the tiny models


def tiny_text_encoder(width=TEXT_WIDTH, open_clip=False, with_projection=False, layers=2):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    config = CLIPTextConfig(hidden_size=width, intermediate_size=width * 2, num_hidden_layers=layers,
                            num_attention_heads=max(1, width // 64), vocab_size=49408, max_position_embeddings=77,
                            hidden_act="gelu" if open_clip else "quick_gelu", projection_dim=POOLED_DIM,
                            bos_token_id=49406, eos_token_id=49407, pad_token_id=49407)
    cls = CLIPTextModelWithProjection if with_projection else CLIPTextModel
    return cls(config).eval()


def tiny_unet(family: model_families.ModelFamily, cross_attention_dim: int):
    from diffusers import UNet2DConditionModel

    kwargs = dict(sample_size=32, in_channels=9 if family.inpainting else 4, out_channels=4,
                  block_out_channels=(32, 64), layers_per_block=1, norm_num_groups=32,
                  cross_attention_dim=cross_attention_dim)
    if family.architecture == "sdxl":
        kwargs.update(down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                      up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), transformer_layers_per_block=(1, 2),
                      attention_head_dim=(1, 1), use_linear_projection=True, addition_embed_type="text_time",
                      addition_time_embed_dim=TIME_ID_DIM, projection_class_embeddings_input_dim=POOLED_DIM + 6 * TIME_ID_DIM)
    else:
        kwargs.update(down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                      up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"))
        if family.architecture == "sd2":  # 64-wide heads (here 1 head) and linear projections, as in SD2
            kwargs.update(attention_head_dim=(1, 1), use_linear_projection=True)
        else:                              # SD1 meaning of attention_head_dim: 8 heads
            kwargs.update(attention_head_dim=8)
    return UNet2DConditionModel(**kwargs).eval()


def tiny_vae(scaling_factor: float = 0.18215):
    from diffusers import AutoencoderKL

    return AutoencoderKL(scaling_factor=scaling_factor, in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(32, 64),
                         layers_per_block=1, norm_num_groups=32, sample_size=64,
                         down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2).eval()


def make_tiny_components(family_id: str, seed: int = 0) -> dict:
    """{"unet", "vae", "text_encoder", "text_encoder_2" (SDXL only, else None)} with random weights."""
    family = model_families.get_family(family_id)
    torch.manual_seed(seed)
    if family.architecture == "sdxl":
        text_encoder = tiny_text_encoder()
        text_encoder_2 = tiny_text_encoder(open_clip=True, with_projection=True)
        cross = TEXT_WIDTH * 2  # SDXL's U-Net sees both encoders' hidden states concatenated
    else:
        width = DEMO_TEXT_WIDTH if family.id == "easel-demo" else TEXT_WIDTH
        text_encoder = tiny_text_encoder(width, open_clip=family.architecture == "sd2")
        text_encoder_2 = None
        cross = width
    return dict(unet=tiny_unet(family, cross), vae=tiny_vae(_family_vae_scaling(family)), text_encoder=text_encoder, text_encoder_2=text_encoder_2)


def _family_vae_scaling(family) -> float:
    from modules.sd_models import read_config

    return float(read_config(family, "vae").get("scaling_factor", 0.18215))


def make_tiny_checkpoint(tmp_path, family_id: str, fmt: str = "safetensors", seed: int = 0, name: str | None = None) -> Path:
    """Write a tiny random model of `family_id` as .safetensors, .ckpt or a diffusers folder; return its path."""
    family = model_families.get_family(family_id)
    parts = make_tiny_components(family_id, seed)
    stem = name or f"tiny-{family_id}"
    tmp_path = Path(tmp_path)
    tmp_path.mkdir(parents=True, exist_ok=True)
    if fmt in ("safetensors", "ckpt"):
        extra = {model_families.V_PRED_MARKER: torch.tensor([])} if family.prediction_type == "v_prediction" else None
        path = tmp_path / f"{stem}.{fmt}"
        export_original_checkpoint(parts["unet"], parts["vae"], parts["text_encoder"], path,
                                   text_encoder_2=parts["text_encoder_2"], extra_keys=extra)
        return path
    if fmt == "diffusers":
        return _write_diffusers_folder(tmp_path / stem, family, parts)
    raise ValueError(f"fmt must be 'safetensors', 'ckpt' or 'diffusers', not {fmt!r}")


def _write_diffusers_folder(folder: Path, family, parts) -> Path:
    from modules.sd_models import read_config

    sdxl = parts["text_encoder_2"] is not None
    for component, module in parts.items():
        if module is not None:
            module.save_pretrained(folder / component, safe_serialization=True)
    scheduler = dict(read_config(family, "scheduler"), prediction_type=family.prediction_type)
    os.makedirs(folder / "scheduler", exist_ok=True)
    (folder / "scheduler" / "scheduler_config.json").write_text(json.dumps(scheduler, indent=1))
    pipeline = "StableDiffusionXLPipeline" if sdxl else "StableDiffusionPipeline"
    index = {"_class_name": pipeline, "unet": ["diffusers", "UNet2DConditionModel"],
             "vae": ["diffusers", "AutoencoderKL"], "text_encoder": ["transformers", "CLIPTextModel"],
             "scheduler": ["diffusers", scheduler.get("_class_name", "PNDMScheduler")]}
    if sdxl:
        index["text_encoder_2"] = ["transformers", "CLIPTextModelWithProjection"]
    (folder / "model_index.json").write_text(json.dumps(index, indent=1))
    return folder


# What GET /sdapi/v1/scripts lists with no extension loaded: Easel's built-in scripts (modules/builtin_scripts/).
BUILTIN_SCRIPT_LISTING = {
    "txt2img": ["prompt matrix", "prompts from file or textbox", "x/y/z plot"],
    "img2img": ["outpainting mk2", "prompt matrix", "prompts from file or textbox", "x/y/z plot"],
}
