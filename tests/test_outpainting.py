"""Outpainting mk2 (modules/builtin_scripts/outpainting.py): sizes, preserved original, pre-fill, API, bad input."""
from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

from modules import masking, processing
from modules.builtin_scripts import outpainting
from tests.test_api_support import decode_png, small, start_easel

torch.set_num_threads(1)


def noisy(size=(64, 64), seed=0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))


def outpaint(model, image, *args, **fields):
    p = processing.StableDiffusionProcessingImg2Img(
        sd_model=model, init_images=[image], prompt="a landscape", steps=3, seed=5, sampler_name="Euler",
        denoising_strength=fields.pop("denoising_strength", 0.8), width=64, height=64, do_not_save_samples=True,
        **fields)
    return outpainting.OutpaintingMk2().run(p, None, *args)


def test_expansion_rounds_each_side_to_a_multiple_of_eight():
    assert outpainting.expansion((64, 64), 16, ["left", "right", "up", "down"]) == (16, 16, 16, 16)
    # 60 wide, not expanded horizontally: 4 columns are added on the right; 50 + 10 up -> 64 high
    assert outpainting.expansion((60, 50), 10, ["up"]) == (0, 4, 14, 0)
    left, right, up, down = outpainting.expansion((61, 64), 13, ["left", "right"])
    assert (61 + left + right) % 8 == 0 and left >= 13 and right >= 13 and up == down == 0


def test_result_is_extended_and_original_pixels_are_kept_exactly(sd1_model):
    image = noisy()
    result = outpaint(sd1_model, image, 32, 0, ["left", "down"], 1.0, 0.05, 1)
    out = result.images[0]
    assert out.size == (96, 96) and (result.width, result.height) == (96, 96)
    assert np.array_equal(np.asarray(out)[0:64, 32:96], np.asarray(image))
    new_area = np.asarray(out)[:, :32]
    assert new_area.std() > 0          # something was painted there, not a flat colour
    assert "Outpainting: 32px left down" in result.infotexts[0]
    assert "Size: 96x96" in result.infotexts[0]


def test_with_mask_blur_only_pixels_outside_the_soft_seam_may_change(sd1_model):
    image = noisy(seed=1)
    out = outpaint(sd1_model, image, 16, 8, ["right"], 1.0, 0.05, 1).images[0]
    assert out.size == (80, 64)
    mask = Image.new("L", (80, 64), 255)
    mask.paste(0, (0, 0, 64, 64))
    untouched = np.asarray(masking.blur(mask, 8, 8))[:, :64] == 0
    assert untouched.sum() > 40 * 64      # most of the original lies outside the seam
    assert np.array_equal(np.asarray(out)[:, :64][untouched], np.asarray(image)[untouched])


def test_prefill_continues_the_edge_colours():
    image = Image.new("RGB", (64, 64), (220, 30, 30))
    image.paste((30, 30, 220), (32, 0, 64, 64))        # red left half, blue right half
    canvas, mask = outpainting.extend(image, (32, 32, 0, 0), 1.0, 0.0, seed=0)
    pixels = np.asarray(canvas).astype(int)
    assert canvas.size == (128, 64) and np.asarray(mask)[:, :32].min() == 255 and np.asarray(mask)[:, 40:90].max() == 0
    assert pixels[:, 4, 0].mean() > 150 and pixels[:, 4, 2].mean() < 100       # left border continues red
    assert pixels[:, 123, 2].mean() > 150 and pixels[:, 123, 0].mean() < 100    # right border continues blue
    noisy_canvas, _ = outpainting.extend(image, (32, 32, 0, 0), 1.0, 0.2, seed=0)
    assert np.asarray(noisy_canvas)[:, :32].std() > np.asarray(canvas)[:, :32].std()   # colour variation adds texture
    assert np.array_equal(np.asarray(noisy_canvas)[:, 32:96], np.asarray(image))


@pytest.mark.parametrize("args, named", [
    ((0, 4, ["left"]), "pixels to expand"),
    ((32, 4, []), "at least one outpainting direction"),
    ((32, 4, ["sideways"]), "unknown direction"),
    ((32, 99, ["left"]), "mask blur"),
])
def test_bad_arguments_are_clear_errors(sd1_model, args, named):
    with pytest.raises(ValueError, match=named):
        outpaint(sd1_model, noisy(), *args)


def test_too_small_result_is_a_clear_error(sd1_model):
    with pytest.raises(ValueError, match="extended image would be 40x32"):
        outpaint(sd1_model, noisy((32, 32)), 8, 0, ["left"], 1.0, 0.0, 1)


# -- through the API ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def client(tmp_path_factory):
    root = tmp_path_factory.mktemp("easel-outpainting")
    (root / "data").mkdir()
    instance = start_easel(root, ["--nowebui"], checkpoints=1)
    yield instance.client
    instance.close()


def _b64(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def test_api_script_name_outpaints_on_img2img_only(client):
    listed = client.get("/sdapi/v1/scripts").json()
    assert "outpainting mk2" in listed["img2img"] and "outpainting mk2" not in listed["txt2img"]
    image = noisy(seed=2)
    # A1111's argument list: info, pixels, mask blur, directions, fall-off exponent, colour variation
    body = small(init_images=[_b64(image)], denoising_strength=0.8, seed=7, script_name="Outpainting mk2",
                 script_args=[None, 32, 0, ["right"], 1.0, 0.05])
    response = client.post("/sdapi/v1/img2img", json=body)
    assert response.status_code == 200, response.text
    out = decode_png(response.json()["images"][0]).convert("RGB")
    assert out.size == (96, 64)
    assert np.array_equal(np.asarray(out)[:, :64], np.asarray(image))
    assert json.loads(response.json()["info"])["width"] == 96


def test_api_bad_script_args_are_422_with_the_reason(client):
    body = small(init_images=[_b64(noisy())], denoising_strength=0.8, script_name="outpainting mk2",
                 script_args=[None, 32, 4, []])
    response = client.post("/sdapi/v1/img2img", json=body)
    assert response.status_code == 422, response.text
    assert "at least one outpainting direction" in response.text
