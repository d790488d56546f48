"""POST /sdapi/v1/img2img and txt2img's hires fix fields, in-process on a tiny model."""
from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
from PIL import Image, ImageDraw

from tests.test_api_support import SIZE, decode_png, small, start_easel


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    root = tmp_path_factory.mktemp("easel-api-img2img")
    (root / "data").mkdir()
    instance = start_easel(root, ["--nowebui"], checkpoints=1)
    yield instance.client
    instance.close()


def b64(image: Image.Image, data_uri: bool = False) -> str:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    text = base64.b64encode(buffer.getvalue()).decode("ascii")
    return "data:image/png;base64," + text if data_uri else text


def picture(size=(SIZE, SIZE)) -> Image.Image:
    image = Image.new("RGB", size, (30, 90, 200))
    ImageDraw.Draw(image).ellipse((8, 8, size[0] - 8, size[1] - 8), fill=(220, 40, 40))
    return image


def mask_image(size=(SIZE, SIZE)) -> Image.Image:
    mask = Image.new("L", size, 0)
    ImageDraw.Draw(mask).rectangle((size[0] // 4, size[1] // 4, size[0] // 2, size[1] // 2), fill=255)
    return mask


def img2img_request(**fields) -> dict:
    return small(init_images=[b64(picture(), data_uri=True)], denoising_strength=0.5, seed=4, **fields)


def test_img2img_response_has_a1111_shape(client):
    response = client.post("/sdapi/v1/img2img", json=img2img_request())
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"images", "parameters", "info"}
    image = decode_png(body["images"][0])
    assert image.size == (SIZE, SIZE)
    info = json.loads(body["info"])
    assert "Denoising strength: 0.5" in info["infotexts"][0] and info["seed"] == 4
    assert body["parameters"]["init_images"] is None          # left out unless include_init_images
    again = client.post("/sdapi/v1/img2img", json=img2img_request(include_init_images=True)).json()
    assert again["parameters"]["init_images"][0].startswith("data:image/png")
    assert decode_png(again["images"][0]).tobytes() == image.tobytes()


def test_denoising_zero_returns_the_init_image(client):
    body = client.post("/sdapi/v1/img2img", json=small(init_images=[b64(picture())], denoising_strength=0.0)).json()
    assert decode_png(body["images"][0]).convert("RGB").tobytes() == picture().tobytes()


def test_inpaint_through_api_keeps_unmasked_pixels(client):
    mask = mask_image()
    response = client.post("/sdapi/v1/img2img", json=small(
        init_images=[b64(picture())], mask=b64(mask), mask_blur=0, inpaint_full_res=False, inpainting_fill=1,
        denoising_strength=0.9, seed=2))
    assert response.status_code == 200, response.text
    out = np.asarray(decode_png(response.json()["images"][0]).convert("RGB"))
    keep = np.asarray(mask) == 0
    assert (out[keep] == np.asarray(picture())[keep]).all()
    assert "Masked content: original" in json.loads(response.json()["info"])["infotexts"][0]


def test_mask_of_another_size_is_resized(client):
    small_mask = mask_image((SIZE // 2, SIZE // 2))
    response = client.post("/sdapi/v1/img2img", json=small(
        init_images=[b64(picture())], mask=b64(small_mask), mask_blur=0, inpaint_full_res=False,
        denoising_strength=0.9))
    assert response.status_code == 200, response.text
    assert decode_png(response.json()["images"][0]).size == (SIZE, SIZE)


@pytest.mark.parametrize("fields, named", [
    ({"init_images": [base64.b64encode(b"just text").decode()]}, "init_images[0]"),
    ({"init_images": []}, "init_images"),
    ({"mask": "not base64 !!!"}, "mask"),
    ({"denoising_strength": 1.5}, "denoising_strength"),
    ({"denoising_strength": -0.1}, "denoising_strength"),
    ({"resize_mode": 9}, "resize_mode"),
    ({"inpainting_fill": 4}, "inpainting_fill"),
    ({"width": 65}, "width"),
])
def test_bad_img2img_fields_are_422_naming_the_field(client, fields, named):
    response = client.post("/sdapi/v1/img2img", json={**img2img_request(), **fields})
    assert response.status_code == 422, response.text
    assert named in response.text


def test_txt2img_hires_fix_fields(client):
    response = client.post("/sdapi/v1/txt2img", json=small(
        seed=3, enable_hr=True, hr_scale=2, hr_upscaler="Latent", hr_second_pass_steps=1, denoising_strength=0.5))
    assert response.status_code == 200, response.text
    body = response.json()
    assert decode_png(body["images"][0]).size == (2 * SIZE, 2 * SIZE)
    text = json.loads(body["info"])["infotexts"][0]
    assert "Hires upscale: 2" in text and "Hires steps: 1" in text and "Hires upscaler: Latent" in text


@pytest.mark.parametrize("fields, named", [
    ({"hr_scale": 16}, "hr_scale"),
    ({"hr_upscaler": "R-ESRGAN 9x"}, "hr_upscaler"),
    ({"denoising_strength": 3}, "denoising_strength"),
])
def test_bad_hires_fields_are_422(client, fields, named):
    response = client.post("/sdapi/v1/txt2img", json=small(enable_hr=True, **fields))
    assert response.status_code == 422, response.text
    assert named in response.text
