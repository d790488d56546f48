"""Hires fix on a tiny random model: sizes, upscalers, infotext, checks."""
from __future__ import annotations

import pytest
import torch

from modules import hires, processing

torch.set_num_threads(1)


def txt2img(model, **fields):
    fields.setdefault("width", 64)
    fields.setdefault("height", 64)
    fields.setdefault("steps", 3)
    fields.setdefault("seed", 9)
    fields.setdefault("prompt", "a red circle")
    fields.setdefault("do_not_save_samples", True)
    return processing.StableDiffusionProcessingTxt2Img(sd_model=model, **fields)


@pytest.mark.parametrize("upscaler", ["Latent", "Latent (antialiased)", "Latent (bicubic)", "Latent (nearest)",
                                      "Lanczos", "Nearest"])
def test_hires_doubles_the_size(sd1_model, upscaler):
    result = processing.process_images(txt2img(sd1_model, enable_hr=True, hr_scale=2.0, hr_upscaler=upscaler,
                                               denoising_strength=0.5))
    assert result.images[0].size == (128, 128)
    text = result.infotexts[0]
    assert "Size: 64x64" in text and "Hires upscale: 2" in text and f"Hires upscaler: {upscaler}" in text
    assert "Denoising strength: 0.5" in text


def test_hires_resize_to_a_size_crops_to_it(sd1_model):
    result = processing.process_images(txt2img(sd1_model, enable_hr=True, hr_resize_x=128, hr_resize_y=96,
                                               hr_second_pass_steps=2, denoising_strength=0.4))
    assert result.images[0].size == (128, 96)
    assert "Hires resize: 128x96" in result.infotexts[0] and "Hires steps: 2" in result.infotexts[0]


def test_target_size_rules():
    p = txt2img(None, width=64, height=96, enable_hr=True, hr_scale=1.5)
    assert hires.target_size(p) == (96, 144, 96, 144)
    p.hr_resize_x = 128
    assert hires.target_size(p) == (128, 192, 128, 192)
    p.hr_resize_x, p.hr_resize_y = 128, 128       # cover 128x128, then crop the centre
    assert hires.target_size(p) == (128, 192, 128, 128)


def test_second_pass_refines_the_first(sd1_model):
    """Strength 0 keeps the upscaled first pass; a real strength changes it; same seed, same image."""
    kept = processing.process_images(txt2img(sd1_model, enable_hr=True, denoising_strength=0.0))
    first = processing.process_images(txt2img(sd1_model))
    upscaled = torch.nn.functional.interpolate(first.latents[0][None], scale_factor=2, mode="bilinear")[0]
    assert torch.allclose(kept.latents[0], upscaled, atol=1e-5)
    a = processing.process_images(txt2img(sd1_model, enable_hr=True, denoising_strength=0.6))
    b = processing.process_images(txt2img(sd1_model, enable_hr=True, denoising_strength=0.6))
    assert not torch.allclose(a.latents[0], upscaled, atol=1e-2)
    assert a.images[0].tobytes() == b.images[0].tobytes()


def test_hires_prompt_and_sampler(sd1_model):
    p = txt2img(sd1_model, enable_hr=True, hr_prompt="a blue square", hr_sampler_name="DDIM", denoising_strength=0.5)
    result = processing.process_images(p)
    assert p.all_hr_prompts == ["a blue square"]
    assert "Hires prompt: a blue square" in result.infotexts[0] and "Hires sampler: DDIM" in result.infotexts[0]


@pytest.mark.parametrize("fields, name", [
    ({"hr_scale": 9.0}, "hr_scale"),
    ({"hr_upscaler": "ESRGAN_4x"}, "hr_upscaler"),
    ({"hr_resize_x": 10}, "hr_resize_x"),
    ({"hr_second_pass_steps": 500}, "hr_second_pass_steps"),
    ({"denoising_strength": 2.0}, "denoising_strength"),
    ({"hr_sampler_name": "Eulr"}, "hr_sampler_name"),
])
def test_bad_hires_fields_name_the_field(sd1_model, fields, name):
    with pytest.raises(ValueError, match=name):
        processing.validate(txt2img(sd1_model, enable_hr=True, **fields), sd1_model.family)
