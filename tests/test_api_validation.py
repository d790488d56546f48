"""Every generation field a client can get wrong: a 422 that names the field and what is allowed.

One sweep over txt2img and img2img (the same Processing checks serve both,
and img2img adds its images and mask). No request here reaches the queue:
each is refused before a job is made, so the sweep is fast and the server
must keep serving afterwards.
"""
from __future__ import annotations

import base64
import io

import pytest
from PIL import Image

from modules.api import image_input
from tests.test_api_support import SIZE, small, start_easel


@pytest.fixture(scope="module")
def easel(tmp_path_factory):
    instance = start_easel(tmp_path_factory.mktemp("easel-api-validation"), ["--nowebui"], checkpoints=1)
    yield instance
    instance.close()


def png_b64(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


INIT = png_b64(Image.new("RGB", (SIZE, SIZE), (40, 120, 200)))
HUGE = png_b64(Image.new("1", (4200, 4200)))            # a small file that decodes to 17.6 M pixels
SAMPLERS = "allowed: DPM++ 2M"
SCHEDULES = "allowed: Automatic"

# (fields, text that must be in the answer: the field's name and the allowed values)
COMMON = [
    ({"steps": 0}, "steps must be between 1 and 150"),
    ({"steps": 151}, "steps must be between 1 and 150"),
    ({"steps": "many"}, "steps: Input should be a valid integer"),
    ({"cfg_scale": -1}, "cfg_scale must be between 0 and 100"),
    ({"cfg_scale": 101}, "cfg_scale must be between 0 and 100"),
    ({"width": 65}, "width must be a multiple of 8 between 64 and 4096"),
    ({"width": 56}, "width must be a multiple of 8 between 64 and 4096"),
    ({"height": 4104}, "height must be a multiple of 8 between 64 and 4096"),
    ({"height": "tall"}, "height: Input should be a valid integer"),
    ({"batch_size": 0}, "batch_size must be between 1 and 64"),
    ({"batch_size": 65}, "batch_size must be between 1 and 64"),
    ({"batch_size": 2.5}, "batch_size: Input should be a valid integer"),
    ({"n_iter": 0}, "n_iter must be between 1 and 1000"),
    ({"n_iter": 1001}, "n_iter must be between 1 and 1000"),
    ({"sampler_name": "Eulr"}, "sampler_name: unknown sampler 'Eulr'"),
    ({"sampler_name": None, "sampler_index": "k_eulr"}, "sampler_name: unknown sampler 'k_eulr'"),
    ({"scheduler": "sometimes"}, "scheduler: unknown schedule type 'sometimes'"),
    ({"subseed_strength": 2}, "subseed_strength must be between 0 and 1"),
    ({"prompt": None}, "prompt: Input should be a valid string"),
]
TXT2IMG = [
    ({"denoising_strength": 1.5}, "denoising_strength must be between 0 and 1"),
    ({"enable_hr": True, "hr_scale": 0}, "hr_scale must be between 1 and 4"),
]
IMG2IMG = [
    ({"denoising_strength": 1.5}, "denoising_strength must be between 0 and 1"),
    ({"denoising_strength": -0.1}, "denoising_strength must be between 0 and 1"),
    ({"init_images": []}, "init_images: at least one"),
    ({"init_images": ["not base64 !!!"]}, "init_images[0]: not valid base64"),
    ({"init_images": [INIT, base64.b64encode(b"just text").decode()]}, "init_images[1]: base64 decodes, but not"),
    ({"init_images": ["https://example.com/cat.png"]}, "init_images[0]: image URLs are not fetched"),
    ({"init_images": [HUGE]}, "init_images[0]: image is 4200x4200; at most 16777216 pixels"),
    ({"mask": "data:image/png;base64,@@"}, "mask: not valid base64"),
    ({"mask": HUGE}, "mask: image is 4200x4200"),
    ({"resize_mode": 9}, "resize_mode must be 0..3"),
    ({"inpainting_fill": 4}, "inpainting_fill must be 0..3"),
    ({"mask_blur": 1000}, "mask_blur_x must be between 0 and 64"),
    ({"inpaint_full_res_padding": -1}, "inpaint_full_res_padding must be between 0 and 256"),
    ({"initial_noise_multiplier": 5}, "initial_noise_multiplier must be between 0 and 2"),
]


def cases(route: str, extra: list) -> list:
    return [pytest.param(route, fields, text, id=f"{route}-{'-'.join(f'{k}={v}'[:30] for k, v in fields.items())}")
            for fields, text in COMMON + extra]


@pytest.mark.parametrize("route, fields, text", cases("txt2img", TXT2IMG) + cases("img2img", IMG2IMG))
def test_bad_field_is_422_naming_field_and_allowed_values(easel, route, fields, text):
    body = small(seed=1, **({"init_images": [INIT], "denoising_strength": 0.5} if route == "img2img" else {}))
    body.update(fields)
    queued_before = len(easel.shared.queue.queued())
    response = easel.client.post(f"/sdapi/v1/{route}", json=body)
    assert response.status_code == 422, response.text
    assert text in response.text
    if "sampler_name" in text:
        assert SAMPLERS in response.text and "Euler a" in response.text
    if "scheduler" in text:
        assert SCHEDULES in response.text and "karras" in response.text
    assert len(easel.shared.queue.queued()) == queued_before and easel.shared.queue.current is None   # no job made


def test_oversized_base64_is_refused_before_decoding(easel, monkeypatch):
    """The byte limit (50 MiB) is checked on the string's length; lowered here so the test sends 2 MiB, not 70."""
    monkeypatch.setattr(image_input, "MAX_IMAGE_BYTES", 1024 * 1024)
    body = small(init_images=["A" * (2 * 1024 * 1024)], denoising_strength=0.5)
    response = easel.client.post("/sdapi/v1/img2img", json=body)
    assert response.status_code == 422 and "init_images[0]: image is larger than 1 MiB" in response.text


def test_server_still_generates_after_the_sweep(easel):
    response = easel.client.post("/sdapi/v1/img2img", json=small(seed=1, init_images=[INIT], denoising_strength=0.5))
    assert response.status_code == 200, response.text
    assert len(response.json()["images"]) == 1


def test_extra_keys_never_reach_internal_fields(easel, tmp_path):
    """Clients send many unknown keys; one named like an internal Processing field (where to save) is ignored."""
    target = tmp_path / "elsewhere"
    body = small(seed=2, save_images=True, outpath_samples=str(target), outpath_grids=str(target),
                 all_seeds=[99], sd_model="x")
    response = easel.client.post("/sdapi/v1/txt2img", json=body)
    assert response.status_code == 200, response.text
    assert not target.exists()
    assert '"all_seeds": [2]' in response.json()["info"]


def test_a1111_sampler_extras_from_clients_are_accepted(easel):
    """webuiapi always sends eta, s_churn, s_tmax=0, restore_faces=False ...: same image as without them."""
    plain = easel.client.post("/sdapi/v1/txt2img", json=small(seed=3)).json()
    extras = easel.client.post("/sdapi/v1/txt2img", json=small(
        seed=3, eta=1.0, s_churn=0, s_tmax=0, s_tmin=0, s_noise=1, restore_faces=False, tiling=False,
        seed_resize_from_h=0, seed_resize_from_w=0, image_cfg_scale=1.5)).json()
    assert extras["images"] == plain["images"]
