"""Upscaler registry and model upscalers: tiny random-weight ESRGAN files loaded through spandrel."""
from __future__ import annotations

import types

import pytest
import torch
from PIL import Image

from modules import hires, processing, shared, upscaler_models, upscalers
from tests.upscaler_factory import save_esrgan

torch.set_num_threads(1)


@pytest.fixture
def model_dirs(tmp_path, monkeypatch):
    """models/ESRGAN and models/RealESRGAN in a temporary folder, as the registry's folders."""
    folders = [tmp_path / "ESRGAN", tmp_path / "RealESRGAN"]
    monkeypatch.setattr(upscalers, "model_folders", lambda: folders)
    upscaler_models.unload()
    yield folders
    upscaler_models.unload()


def gradient(width: int, height: int) -> Image.Image:
    image = Image.new("RGB", (width, height))
    image.putdata([(x * 255 // max(width - 1, 1), y * 255 // max(height - 1, 1), 128)
                   for y in range(height) for x in range(width)])
    return image


def test_builtin_upscalers_come_first_in_a1111_order(model_dirs):
    assert upscalers.names() == ["Lanczos", "Nearest"]
    assert upscalers.names(include_none=True) == ["None", "Lanczos", "Nearest"]
    assert upscalers.upscale_to(gradient(10, 6), "Nearest", (20, 12)).size == (20, 12)


@pytest.mark.parametrize("fmt", ["pth", "safetensors"])
@pytest.mark.parametrize("scale", [2, 4])
def test_esrgan_file_is_listed_loaded_and_upscales_by_its_scale(model_dirs, fmt, scale):
    path = save_esrgan(model_dirs[0], f"{scale}x-Tiny", scale=scale, fmt=fmt)
    assert f"{scale}x-Tiny" in upscalers.names()
    descriptor = upscaler_models.load(path)
    assert descriptor.architecture.name == "ESRGAN" and descriptor.scale == scale
    assert next(descriptor.model.parameters()).dtype == torch.float32       # fp32 on CPU by default
    out = upscalers.upscale_to(gradient(12, 8), f"{scale}x-Tiny", (12 * scale, 8 * scale))
    assert out.size == (12 * scale, 8 * scale) and out.mode == "RGB"


def test_model_is_run_again_until_the_target_is_covered_then_resized(model_dirs):
    save_esrgan(model_dirs[0], "2x-Tiny", scale=2)
    out = upscalers.upscale_to(gradient(8, 6), "2x-Tiny", (60, 45))      # 7.5x: three 2x passes, then Lanczos
    assert out.size == (60, 45)


def test_realesrgan_folder_and_alpha_is_kept(model_dirs):
    save_esrgan(model_dirs[1], "RealESRGAN_x2plus", scale=2, fmt="safetensors")
    image = gradient(10, 10).convert("RGBA")
    image.putalpha(Image.new("L", (10, 10), 77))
    out = upscalers.upscale_to(image, "RealESRGAN_x2plus", (20, 20))
    assert out.mode == "RGBA" and out.size == (20, 20)
    assert out.getchannel("A").getextrema() == (77, 77)


def test_loaded_model_is_cached_and_released(model_dirs):
    a = save_esrgan(model_dirs[0], "a", scale=2)
    b = save_esrgan(model_dirs[0], "b", scale=2, seed=1)
    first = upscaler_models.load(a)
    assert upscaler_models.load(a) is first                  # cached
    upscaler_models.load(b)                                   # another model replaces it
    assert upscaler_models.load(a) is not first
    upscalers.unload()
    assert upscaler_models._loaded is None


def test_listing_reads_the_scale_of_a_loaded_model(model_dirs):
    path = save_esrgan(model_dirs[0], "TinyNoScaleInName", scale=2)
    assert {u.name: u.scale for u in upscalers.available()}["TinyNoScaleInName"] == upscalers.DEFAULT_SCALE
    upscaler_models.load(path)
    assert {u.name: u.scale for u in upscalers.available()}["TinyNoScaleInName"] == 2


def test_bf16_precision_setting_runs_the_model_in_bf16(model_dirs, monkeypatch):
    monkeypatch.setattr(shared, "opts", types.SimpleNamespace(precision="bf16"))
    path = save_esrgan(model_dirs[0], "2x-Tiny", scale=2)
    assert next(upscaler_models.load(path).model.parameters()).dtype == torch.bfloat16
    assert upscalers.upscale_to(gradient(8, 8), "2x-Tiny", (16, 16)).size == (16, 16)


def test_not_an_upscaler_file_is_a_clear_error(model_dirs):
    bad = model_dirs[0] / "notes.safetensors"
    model_dirs[0].mkdir(parents=True)
    from safetensors.torch import save_file

    save_file({"something.weight": torch.zeros(3)}, str(bad))
    with pytest.raises(ValueError, match="notes.safetensors is not an upscaler model architecture"):
        upscalers.upscale_to(gradient(8, 8), "notes", (16, 16))
    (model_dirs[0] / "broken.pth").write_bytes(b"not a pickle")
    with pytest.raises(ValueError, match="cannot read upscaler model broken.pth"):
        upscalers.upscale_to(gradient(8, 8), "broken", (16, 16))


def test_unknown_upscaler_names_the_field_and_the_choices(model_dirs):
    save_esrgan(model_dirs[0], "4x-Tiny", scale=4)
    with pytest.raises(ValueError, match=r"upscaler_1: unknown upscaler 'Bicubic'; available: None, Lanczos, "
                                         r"Nearest, 4x-Tiny"):
        upscalers.find("Bicubic", "upscaler_1", include_none=True)


def test_missing_spandrel_lists_model_files_as_unusable_with_the_reason(model_dirs, monkeypatch):
    save_esrgan(model_dirs[0], "4x-Tiny", scale=4)
    monkeypatch.setattr(upscaler_models, "_registry", None)
    monkeypatch.setattr(upscaler_models, "_unavailable", "the spandrel package is not installed")
    assert "4x-Tiny" not in upscalers.names()
    assert upscalers.unavailable() == {"4x-Tiny": "the spandrel package is not installed"}
    with pytest.raises(ValueError, match="hr_upscaler: upscaler '4x-Tiny' cannot be used: the spandrel package"):
        upscalers.find("4x-Tiny", "hr_upscaler")


def test_tiles_blend_to_the_untiled_result():
    """A per-pixel operation must come out identical whether it runs in one piece or in overlapping tiles."""
    def run(x):
        return torch.nn.functional.interpolate(x * 0.5 + 0.25, scale_factor=2, mode="nearest")

    tensor = torch.rand(1, 3, 70, 53)
    whole = run(tensor)
    tiles = upscaler_models.tiled(run, tensor, 2, tile=24, overlap=6)
    assert tiles.shape == whole.shape
    assert torch.allclose(tiles, whole, atol=1e-6)


def test_large_image_is_run_in_tiles_no_bigger_than_the_tile(monkeypatch):
    seen = []

    def run(x):
        seen.append(tuple(x.shape[2:]))
        return torch.nn.functional.interpolate(x, scale_factor=4, mode="nearest")

    out = upscaler_models.tiled(run, torch.rand(1, 3, 512, 300), 4)     # a 2048 px result
    assert out.shape == (1, 3, 2048, 1200)
    assert max(max(s) for s in seen) <= upscaler_models.TILE and len(seen) > 4


def test_hires_lists_and_uses_model_upscalers(model_dirs, sd1_model):
    save_esrgan(model_dirs[0], "2x-Tiny", scale=2)
    assert hires.upscaler_names()[-3:] == ["Lanczos", "Nearest", "2x-Tiny"]
    p = processing.StableDiffusionProcessingTxt2Img(
        sd_model=sd1_model, prompt="a red circle", width=64, height=64, steps=2, seed=3, do_not_save_samples=True,
        enable_hr=True, hr_scale=2.0, hr_upscaler="2x-Tiny", denoising_strength=0.3)
    result = processing.process_images(p)
    assert result.images[0].size == (128, 128)
    assert "Hires upscaler: 2x-Tiny" in result.infotexts[0]


def test_hires_unknown_upscaler_lists_latent_and_pixel_upscalers(model_dirs):
    save_esrgan(model_dirs[0], "2x-Tiny", scale=2)
    p = processing.StableDiffusionProcessingTxt2Img(prompt="x", width=64, height=64, enable_hr=True,
                                                    hr_upscaler="ESRGAN_4x")
    with pytest.raises(ValueError, match=r"hr_upscaler: unknown upscaler 'ESRGAN_4x'; available: Latent, .*"
                                         r"Lanczos, Nearest, 2x-Tiny"):
        hires.validate(p)
