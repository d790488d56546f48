"""Extras (upscale finished images): sizes, infotext kept, limits, the queue, and A1111's extras API.

The API is tested through TestClient and with the `webuiapi` client from
PyPI against a real server (uvicorn), as tests/test_api_webuiapi.py does.
"""
from __future__ import annotations

import base64
import io
import threading

import pytest
import torch
from PIL import Image, PngImagePlugin

from modules import postprocessing
from tests.test_api_support import Server, blocker, decode_png, start_easel, wait_until
from tests.upscaler_factory import save_esrgan

torch.set_num_threads(1)

SOURCE_INFOTEXT = ("a red circle\nNegative prompt: blur\n"
                   "Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1234, Size: 64x48, Model: tiny")


def source_image(width: int = 64, height: int = 48, infotext: str | None = SOURCE_INFOTEXT) -> Image.Image:
    """A PNG (decoded from bytes, as an upload is) with a gradient and, optionally, its infotext."""
    image = Image.new("RGB", (width, height))
    image.putdata([(x * 4 % 256, y * 5 % 256, 90) for y in range(height) for x in range(width)])
    buffer = io.BytesIO()
    meta = PngImagePlugin.PngInfo()
    if infotext:
        meta.add_text("parameters", infotext)
    image.save(buffer, format="PNG", pnginfo=meta)
    buffer.seek(0)
    result = Image.open(buffer)
    result.load()
    return result


def b64(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=_pnginfo(image))
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _pnginfo(image):
    meta = PngImagePlugin.PngInfo()
    for key, value in image.info.items():
        if isinstance(value, str):
            meta.add_text(key, value)
    return meta


# ---- the processing itself -----------------------------------------------------

def test_scale_by_keeps_the_source_infotext_and_adds_postprocess_keys():
    settings = postprocessing.ExtrasSettings(upscaling_resize=2, upscaler_1="Lanczos")
    [result] = postprocessing.run([(source_image(), None)], settings)
    assert result.image.size == (128, 96)
    assert result.infotext == SOURCE_INFOTEXT + ", Postprocess upscale by: 2, Postprocess upscaler: Lanczos"
    assert result.image.info["parameters"] == result.infotext
    assert result.image.info["postprocessing"] == "Postprocess upscale by: 2, Postprocess upscaler: Lanczos"


def test_upscaling_an_extras_result_again_replaces_the_postprocess_keys():
    settings = postprocessing.ExtrasSettings(upscaling_resize=1.5, upscaler_1="Nearest")
    first = postprocessing.merged_infotext(SOURCE_INFOTEXT, {"Postprocess upscale by": 2,
                                                             "Postprocess upscaler": "Lanczos"})
    [result] = postprocessing.run([(source_image(infotext=first), None)], settings)
    assert result.infotext == SOURCE_INFOTEXT + ", Postprocess upscale by: 1.5, Postprocess upscaler: Nearest"


def test_image_without_infotext_gets_only_the_postprocessing_chunk():
    settings = postprocessing.ExtrasSettings(upscaling_resize=2, upscaler_1="Lanczos")
    [result] = postprocessing.run([(source_image(infotext=None), None)], settings)
    assert result.infotext is None and "parameters" not in result.image.info
    assert result.keys == "Postprocess upscale by: 2, Postprocess upscaler: Lanczos"


def test_scale_to_with_crop_gives_exactly_that_size():
    settings = postprocessing.ExtrasSettings(resize_mode=1, upscaling_resize_w=160, upscaling_resize_h=160,
                                             upscaling_crop=True, upscaler_1="Lanczos")
    [result] = postprocessing.run([(source_image(64, 48), None)], settings)
    assert result.image.size == (160, 160)        # covered (214x160), then the centre cut out
    assert "Postprocess upscale to: 160x160, Postprocess crop to: 160x160" in result.infotext


def test_scale_to_without_crop_keeps_the_aspect_ratio():
    settings = postprocessing.ExtrasSettings(resize_mode=1, upscaling_resize_w=160, upscaling_resize_h=160,
                                             upscaling_crop=False, upscaler_1="Lanczos")
    [result] = postprocessing.run([(source_image(64, 48), None)], settings)
    assert result.image.size == (213, 160)


def test_upscaler_2_is_blended_by_its_visibility():
    image = source_image(16, 16)
    Settings = postprocessing.ExtrasSettings
    lanczos = postprocessing.run([(image, None)], Settings(upscaler_1="Lanczos", upscaling_resize=4))
    nearest = postprocessing.run([(image, None)], Settings(upscaler_1="Nearest", upscaling_resize=4))
    blended = postprocessing.run([(image, None)], Settings(
        upscaler_1="Lanczos", upscaler_2="Nearest", extras_upscaler_2_visibility=0.5, upscaling_resize=4))
    expected = Image.blend(lanczos[0].image, nearest[0].image, 0.5)
    assert blended[0].image.tobytes() == expected.tobytes()
    assert "Postprocess upscaler 2: Nearest" in blended[0].infotext


def test_upscaler_1_none_leaves_the_image_as_it_is():
    image = source_image()
    [result] = postprocessing.run([(image, None)], postprocessing.ExtrasSettings())
    assert result.image.size == image.size and result.image.tobytes() == image.tobytes()
    assert result.infotext == SOURCE_INFOTEXT


@pytest.mark.parametrize("fields, message", [
    ({"upscaling_resize": 9, "upscaler_1": "Lanczos"}, "upscaling_resize must be between 1 and 8"),
    ({"upscaler_1": "Bicubic"}, "upscaler_1: unknown upscaler 'Bicubic'; available: None, Lanczos, Nearest"),
    ({"upscaler_2": "Nope"}, "upscaler_2: unknown upscaler 'Nope'"),
    ({"resize_mode": 3}, "resize_mode must be 0"),
    ({"extras_upscaler_2_visibility": 2}, "extras_upscaler_2_visibility must be between 0 and 1"),
])
def test_bad_settings_name_the_field(fields, message):
    with pytest.raises(ValueError, match=message):
        postprocessing.check([(source_image(), None)], postprocessing.ExtrasSettings(**fields))


def test_result_larger_than_the_pixel_limit_is_refused():
    settings = postprocessing.ExtrasSettings(upscaling_resize=8, upscaler_1="Lanczos")
    with pytest.raises(ValueError, match=r"upscaling_resize: the result would be 8192x4096; at most 16777216 pixels"):
        postprocessing.check([(Image.new("RGB", (1024, 512)), None)], settings)
    to = postprocessing.ExtrasSettings(resize_mode=1, upscaling_resize_w=4096, upscaling_resize_h=4096,
                                       upscaler_1="Lanczos")
    with pytest.raises(ValueError, match=r"upscaled 64x; at most 8x is allowed"):
        postprocessing.check([(Image.new("RGB", (64, 64)), None)], to)


def test_directory_batch_saves_numbered_files_and_skips_non_images(tmp_path):
    source, target = tmp_path / "in", tmp_path / "out"
    source.mkdir()
    source_image().save(source / "a.png", pnginfo=_pnginfo(source_image()))
    Image.new("RGB", (10, 20), "blue").save(source / "b.jpg")
    (source / "notes.txt").write_text("not an image")
    items, folder = postprocessing.directory_items(str(source), str(target))
    results = postprocessing.run(items, postprocessing.ExtrasSettings(upscaler_1="Nearest"), save_dir=folder)
    assert [r.image.size for r in results] == [(128, 96), (20, 40)]
    saved = sorted(target.iterdir())
    assert [p.name for p in saved] == ["00000.png", "00001.png"]
    with Image.open(saved[0]) as image:
        assert image.size == (128, 96)
        assert image.info["parameters"].startswith(SOURCE_INFOTEXT + ", Postprocess upscale by: 2")
        assert image.info["postprocessing"] == "Postprocess upscale by: 2, Postprocess upscaler: Nearest"


def test_directory_batch_errors_name_the_field(tmp_path):
    with pytest.raises(ValueError, match="Input directory: enter the folder"):
        postprocessing.directory_items("", "")
    with pytest.raises(ValueError, match="Input directory: .* is not an existing folder"):
        postprocessing.directory_items(str(tmp_path / "missing"), "")


# ---- the API -------------------------------------------------------------------

@pytest.fixture(scope="module")
def easel(tmp_path_factory):
    root = tmp_path_factory.mktemp("easel-extras")
    easel = start_easel(root, ["--nowebui"], load=False)
    save_esrgan(root / "data" / "models" / "ESRGAN", "2x-Tiny", scale=2, fmt="safetensors")
    yield easel
    easel.close()


def test_api_lists_upscalers_in_a1111_shape(easel):
    listed = easel.client.get("/sdapi/v1/upscalers").json()
    assert [u["name"] for u in listed] == ["None", "Lanczos", "Nearest", "2x-Tiny"]
    assert listed[1] == {"name": "Lanczos", "model_name": None, "model_path": None, "model_url": None, "scale": 4}
    tiny = listed[3]
    assert tiny["model_name"] == "2x-Tiny" and tiny["model_path"].endswith("2x-Tiny.safetensors")
    assert tiny["scale"] == 2 and tiny["model_url"] is None
    modes = easel.client.get("/sdapi/v1/latent-upscale-modes").json()
    assert {"name": "Latent"} in modes and {"name": "Latent (nearest-exact)"} in modes


def test_api_single_image_with_a_model_upscaler(easel):
    response = easel.client.post("/sdapi/v1/extra-single-image", json={
        "image": "data:image/png;base64," + b64(source_image(16, 12)), "upscaling_resize": 2, "upscaler_1": "2x-Tiny"})
    assert response.status_code == 200, response.text
    body = response.json()
    image = decode_png(body["image"])
    assert image.size == (32, 24)
    assert image.info["parameters"] == SOURCE_INFOTEXT + ", Postprocess upscale by: 2, Postprocess upscaler: 2x-Tiny"
    assert body["html_info"] == "<p>Postprocess upscale by: 2, Postprocess upscaler: 2x-Tiny</p>"
    assert not (easel.root / "data" / "outputs" / "extras-images").exists()     # the API saves nothing (A1111)


def test_api_batch_images(easel):
    response = easel.client.post("/sdapi/v1/extra-batch-images", json={
        "imageList": [{"data": b64(source_image(20, 10)), "name": "a.png"},
                      {"data": b64(source_image(8, 8, infotext=None)), "name": "b.png"}],
        "resize_mode": 1, "upscaling_resize_w": 40, "upscaling_resize_h": 40, "upscaling_crop": False,
        "upscaler_1": "Lanczos"})
    assert response.status_code == 200, response.text
    body = response.json()
    sizes = [decode_png(b).size for b in body["images"]]
    assert sizes == [(80, 40), (40, 40)]
    assert "Postprocess upscale to: 40x40" in body["html_info"]


IMAGE = object()    # stands for a valid base64 PNG in the cases below


@pytest.mark.parametrize("body, field", [
    ({"image": "not base64!", "upscaler_1": "Lanczos"}, "image: not valid base64"),
    ({"upscaler_1": "Lanczos"}, "image: expected a base64-encoded image"),
    ({"image": IMAGE, "upscaler_1": "ESRGAN_4x"},
     "upscaler_1: unknown upscaler 'ESRGAN_4x'; available: None, Lanczos, Nearest, 2x-Tiny"),
    ({"image": IMAGE, "upscaler_1": "Lanczos", "upscaling_resize": 12}, "upscaling_resize must be between 1 and 8"),
    ({"image": IMAGE, "upscaler_1": "Lanczos", "gfpgan_visibility": 0.5}, "gfpgan_visibility: face restoration"),
    ({"image": IMAGE, "upscaler_1": "Lanczos", "upscaling_resize": "big"}, "upscaling_resize"),
])
def test_api_bad_fields_are_422_naming_the_field(easel, body, field):
    body = {key: b64(source_image(8, 8)) if value is IMAGE else value for key, value in body.items()}
    response = easel.client.post("/sdapi/v1/extra-single-image", json=body)
    assert response.status_code == 422
    assert field in response.text


def test_api_batch_bad_image_names_its_index(easel):
    response = easel.client.post("/sdapi/v1/extra-batch-images", json={
        "imageList": [{"data": b64(source_image(8, 8)), "name": "a"}, {"data": "@@@", "name": "b"}],
        "upscaler_1": "Lanczos"})
    assert response.status_code == 422 and "imageList[1].data: not valid base64" in response.text
    empty = easel.client.post("/sdapi/v1/extra-batch-images", json={"imageList": [], "upscaler_1": "Lanczos"})
    assert empty.status_code == 422 and "imageList: at least one" in empty.text


def test_api_extras_wait_for_the_running_job(easel):
    """Extras are a queue job: while another job holds the worker, the request waits, then completes."""
    job, release = blocker(easel.shared)
    results = []
    thread = threading.Thread(target=lambda: results.append(easel.client.post(
        "/sdapi/v1/extra-single-image", json={"image": b64(source_image(8, 8)), "upscaler_1": "Lanczos"})))
    thread.start()
    queued = wait_until(lambda: [j for j in easel.shared.queue.queued() if j.label == "extras"], what="extras queued")
    assert queued and not results
    release()
    thread.join(60)
    assert results and results[0].status_code == 200
    assert decode_png(results[0].json()["image"]).size == (16, 16)


# ---- webuiapi (PyPI client) against a real server -------------------------------

def test_webuiapi_extra_single_and_batch(easel):
    webuiapi = pytest.importorskip("webuiapi", reason="pip install -r requirements-test.txt")
    server = Server(easel.app)
    try:
        api = webuiapi.WebUIApi(host="127.0.0.1", port=server.port)
        single = api.extra_single_image(source_image(16, 12), upscaler_1="2x-Tiny", upscaling_resize=2)
        assert single.image.size == (32, 24)
        assert "Postprocess upscaler: 2x-Tiny" in single.info         # webuiapi puts html_info there
        assert "Seed: 1234" in single.image.info["parameters"]
        batch = api.extra_batch_images([source_image(10, 10), source_image(6, 4)], upscaler_1="Nearest",
                                       upscaling_resize=3)
        assert [im.size for im in batch.images] == [(30, 30), (18, 12)]
        assert [u["name"] for u in api.get_upscalers()] == ["None", "Lanczos", "Nearest", "2x-Tiny"]
    finally:
        server.close()


def test_page_says_what_is_missing_before_queueing_anything():
    from modules.ui import extras

    with pytest.raises(ValueError, match="Single Image: upload an image first"):
        extras.collect(extras.SOURCES[0], None, None, "", "")
    with pytest.raises(ValueError, match="Batch Process: upload one or more images first"):
        extras.collect(extras.SOURCES[1], None, [], "", "")
