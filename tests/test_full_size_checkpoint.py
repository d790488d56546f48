"""A full-size SD1.5 checkpoint in the original single-file layout loads offline and generates.

The weights are random (no real checkpoint can be downloaded here), but the
file has SD1.5's real key layout, shapes and fp16 storage, as users' files do.
It is written once per session (about 2 GB in a temp folder).
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from modules import processing, sd_models
from modules.checkpoint_export import export_original_checkpoint

CONFIGS = Path(__file__).resolve().parent.parent / "configs" / "sd1"


def _random_like(module: torch.nn.Module, generator: torch.Generator) -> None:
    """Small random weights, fast (no kaiming init over a billion parameters)."""
    with torch.no_grad():
        for name, param in module.named_parameters():
            if "norm" in name and name.endswith("weight"):
                param.fill_(1.0)
            elif name.endswith("bias"):
                param.zero_()
            else:
                param.normal_(0.0, 0.02, generator=generator)


@pytest.fixture(scope="module")
def sd15_file(tmp_path_factory):
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    generator = torch.Generator().manual_seed(0)
    parts = {}
    for name, cls in (("unet", UNet2DConditionModel), ("vae", AutoencoderKL)):
        config = json.loads((CONFIGS / name / "config.json").read_text())
        config = {k: v for k, v in config.items() if not k.startswith("_")}
        with init_empty_weights():
            model = cls.from_config(config)
        model.to_empty(device="cpu")
        _random_like(model, generator)
        parts[name] = model
    with init_empty_weights():
        text = CLIPTextModel(CLIPTextConfig.from_json_file(str(CONFIGS / "text_encoder" / "config.json")))
    text.to_empty(device="cpu")
    _random_like(text, generator)
    for buffer_name, buffer in text.named_buffers():   # to_empty() left buffers uninitialised
        if buffer_name.endswith("position_ids"):
            buffer.copy_(torch.arange(buffer.shape[-1])[None])
    path = tmp_path_factory.mktemp("sd15") / "random-sd15.safetensors"
    export_original_checkpoint(parts["unet"], parts["vae"], text, path, dtype=torch.float16)
    del parts, text
    return path


def test_full_size_sd15_single_file_loads_in_bf16_and_generates(sd15_file):
    model = sd_models.load_model(str(sd15_file), torch.device("cpu"), torch.bfloat16)
    try:
        assert model.family.id == "sd1"
        assert model.unet.config.block_out_channels == [320, 640, 1280, 1280] or tuple(model.unet.config.block_out_channels) == (320, 640, 1280, 1280)
        assert next(model.unet.parameters()).dtype == torch.bfloat16
        params = sum(p.numel() for m in (model.unet, model.vae, *model.text_encoders) for p in m.parameters())
        assert params > 1.0e9
        p = processing.StableDiffusionProcessingTxt2Img(sd_model=model, prompt="a red circle", seed=3, steps=1,
                                                         width=64, height=64, do_not_save_samples=True)
        result = processing.process_images(p)
        assert result.images[0].size == (64, 64)
        assert torch.isfinite(result.latents[0]).all()
        assert "Steps: 1" in result.infotexts[0] and "Model: random-sd15" in result.infotexts[0]
    finally:
        model.unload()
