"""img2img and inpainting through the PyPI `webuiapi` client, unchanged, against a real Easel server.

The client sends its own defaults (eta=1, image_cfg_scale=1.5, mask_blur=4,
a data: URI per image), so this checks that what A1111 users already run
works as they expect: the size they asked for, the same image for the same
seed, the pixels outside the mask kept, and an `info` that reports what ran.
"""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

webuiapi = pytest.importorskip("webuiapi", reason="pip install -r requirements-test.txt")

from tests.test_api_support import SIZE, Server, start_easel  # noqa: E402


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    easel = start_easel(tmp_path_factory.mktemp("easel-webuiapi-img2img"), ["--nowebui"], checkpoints=1)
    server = Server(easel.app)
    yield webuiapi.WebUIApi(host="127.0.0.1", port=server.port, sampler="Euler", steps=2)
    server.close()
    easel.close()


def picture(size=(SIZE, SIZE)) -> Image.Image:
    image = Image.new("RGB", size, (30, 90, 200))
    ImageDraw.Draw(image).ellipse((8, 8, size[0] - 8, size[1] - 8), fill=(220, 40, 40))
    return image


def square_mask(size=(SIZE, SIZE)) -> Image.Image:
    """White (repaint) square in the upper-left quarter, black (keep) elsewhere."""
    mask = Image.new("L", size, 0)
    ImageDraw.Draw(mask).rectangle((8, 8, 31, 31), fill=255)
    return mask


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB")).astype(int)


def test_img2img_size_seed_and_info(api):
    result = api.img2img(images=[picture()], prompt="a red circle", denoising_strength=0.6, seed=21,
                         width=SIZE, height=SIZE)
    assert len(result.images) == 1 and result.image.size == (SIZE, SIZE)
    assert result.info["seed"] == 21 and result.info["all_seeds"] == [21]
    assert result.info["denoising_strength"] == 0.6
    assert "Denoising strength: 0.6" in result.info["infotexts"][0]
    assert not np.array_equal(pixels(result.image), pixels(picture()))          # it did change the image

    again = api.img2img(images=[picture()], prompt="a red circle", denoising_strength=0.6, seed=21,
                        width=SIZE, height=SIZE)
    assert again.image.tobytes() == result.image.tobytes()                       # same seed, same image
    other = api.img2img(images=[picture()], prompt="a red circle", denoising_strength=0.6, seed=22,
                        width=SIZE, height=SIZE)
    assert other.image.tobytes() != result.image.tobytes()

    parsed = api.png_info(result.image)                                          # infotext travels in the PNG
    assert "Seed: 21" in parsed.info and parsed.parameters["Denoising strength"] == "0.6"


def test_img2img_resizes_to_the_requested_size(api):
    result = api.img2img(images=[picture((SIZE, SIZE))], denoising_strength=0.5, seed=3, width=96, height=SIZE)
    assert result.image.size == (96, SIZE)
    assert result.info["width"] == 96 and result.info["height"] == SIZE


def test_img2img_batch_has_consecutive_seeds(api):
    result = api.img2img(images=[picture()], denoising_strength=0.5, seed=40, batch_size=2, width=SIZE, height=SIZE)
    assert len(result.images) == 2 and result.info["all_seeds"] == [40, 41]
    assert result.images[0].tobytes() != result.images[1].tobytes()


@pytest.mark.parametrize("full_res", [False, True], ids=["whole-picture", "only-masked"])
def test_inpainting_keeps_unmasked_pixels(api, full_res):
    mask = square_mask()
    result = api.img2img(images=[picture()], mask_image=mask, mask_blur=0, inpainting_fill=1,
                         inpaint_full_res=full_res, inpaint_full_res_padding=4, denoising_strength=0.9,
                         seed=5, width=SIZE, height=SIZE, prompt="a green square")
    assert result.image.size == (SIZE, SIZE)
    out, original = pixels(result.image), pixels(picture())
    keep = np.asarray(mask) == 0
    assert np.array_equal(out[keep], original[keep])                              # untouched outside the mask
    assert np.abs(out[~keep] - original[~keep]).mean() > 1                        # repainted inside it
    text = result.info["infotexts"][0]
    assert "Masked content: original" in text and "Mask blur" not in text       # 0 is left out, as in A1111
    assert ("Inpaint area: Only masked" in text) == full_res
    assert result.info["denoising_strength"] == 0.9 and result.info["seed"] == 5


def test_inverted_mask_keeps_the_masked_area(api):
    mask = square_mask()
    result = api.img2img(images=[picture()], mask_image=mask, mask_blur=0, inpainting_mask_invert=1,
                         inpaint_full_res=False, denoising_strength=0.9, seed=6, width=SIZE, height=SIZE)
    out, original = pixels(result.image), pixels(picture())
    painted = np.asarray(mask) > 0
    assert np.array_equal(out[painted], original[painted])
    assert np.abs(out[~painted] - original[~painted]).mean() > 1
    assert "Mask mode: Inpaint not masked" in result.info["infotexts"][0]


def test_inpainting_with_the_clients_defaults_is_reproducible(api):
    """mask_blur=4, fill=0 and only-masked: what a script that passes only the mask gets."""
    first = api.img2img(images=[picture()], mask_image=square_mask(), seed=8, width=SIZE, height=SIZE)
    second = api.img2img(images=[picture()], mask_image=square_mask(), seed=8, width=SIZE, height=SIZE)
    assert first.image.size == (SIZE, SIZE) and first.image.tobytes() == second.image.tobytes()
    far_corner = (slice(48, SIZE), slice(48, SIZE))                              # beyond the blur of the mask
    assert np.array_equal(pixels(first.image)[far_corner], pixels(picture())[far_corner])
    assert "Mask blur: 4" in first.info["infotexts"][0]


def test_bad_img2img_input_is_a_422_the_client_sees(api):
    response = api.session.post(f"{api.baseurl}/img2img", json={"init_images": ["not base64 !!!"], "steps": 2})
    assert response.status_code == 422 and "init_images[0]" in response.text
