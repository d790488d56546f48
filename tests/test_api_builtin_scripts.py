"""The built-in scripts and grids through the A1111 API (in-process app, two tiny checkpoints)."""
from __future__ import annotations

import json
import time

import pytest
from PIL import Image

from modules import images as image_files, infotext
from tests.test_api_support import decode_png, small, start_easel


@pytest.fixture(scope="module")
def easel(tmp_path_factory):
    instance = start_easel(tmp_path_factory.mktemp("easel-scripts"), ["--nowebui"], checkpoints=2)
    yield instance
    instance.close()


def xyz(x_type, x_values, y_type="Nothing", y_values="", include_lone_images=True):
    return [x_type, x_values, [], y_type, y_values, [], "Nothing", "", [], True, include_lone_images, False, False,
            False, False, False, 0, False]


def test_scripts_list_has_the_builtin_scripts(easel):
    listed = easel.client.get("/sdapi/v1/scripts").json()
    for tab in ("txt2img", "img2img"):
        assert {"x/y/z plot", "prompt matrix", "prompts from file or textbox"} <= set(listed[tab])


def test_xyz_plot_by_script_name(easel):
    body = easel.client.post("/sdapi/v1/txt2img", json=small(
        seed=5, steps=1, script_name="X/Y/Z plot", script_args=xyz("Seed", "1,2", "Steps", "1-2"))).json()
    assert len(body["images"]) == 5
    info = json.loads(body["info"])
    assert info["index_of_first_image"] == 1 and len(info["infotexts"]) == 5
    grid = decode_png(body["images"][0])
    assert grid.width > 128 and grid.height > 128
    assert "X Type: Seed" in grid.info["parameters"]
    cells = [infotext.parse_infotext(t) for t in info["infotexts"][1:]]
    assert [(c["Seed"], c["Steps"]) for c in cells] == [("1", "1"), ("2", "1"), ("1", "2"), ("2", "2")]
    alone = easel.client.post("/sdapi/v1/txt2img", json=small(seed=2, steps=2)).json()
    assert decode_png(alone["images"][0]).tobytes() == decode_png(body["images"][4]).tobytes()


def test_xyz_unknown_sampler_is_422_naming_it(easel):
    response = easel.client.post("/sdapi/v1/txt2img", json=small(
        script_name="x/y/z plot", script_args=xyz("Sampler", "Euler, Not A Sampler")))
    assert response.status_code == 422
    assert "unknown sampler 'Not A Sampler'" in response.json()["detail"] and "Euler a" in response.json()["detail"]


def test_xyz_checkpoint_axis_switches_and_restores(easel):
    titles = [m["title"] for m in easel.client.get("/sdapi/v1/sd-models").json()]
    before = easel.shared.models.current.checkpoint.filename
    body = easel.client.post("/sdapi/v1/txt2img", json=small(
        seed=3, steps=1, script_name="X/Y/Z plot",
        script_args=["Checkpoint name", "", titles, "Nothing", "", [], "Nothing", "", [], True,
                     True, False, False, False, False, False, 0, False])).json()
    info = json.loads(body["info"])
    models = [infotext.parse_infotext(t)["Model"] for t in info["infotexts"][1:]]
    assert sorted(models) == sorted(t.split(" [")[0].rsplit(".", 1)[0] for t in titles)
    assert easel.shared.models.current.checkpoint.filename == before
    bad = easel.client.post("/sdapi/v1/txt2img", json=small(
        script_name="X/Y/Z plot", script_args=xyz("Checkpoint name", "nope.safetensors")))
    assert bad.status_code == 422 and "unknown checkpoint 'nope.safetensors'" in bad.json()["detail"]


def test_xyz_clip_skip_axis_overrides_per_cell_and_restores(easel):
    body = easel.client.post("/sdapi/v1/txt2img", json=small(
        seed=4, steps=1, script_name="X/Y/Z plot", script_args=xyz("Clip skip", "1, 2"))).json()
    cells = [infotext.parse_infotext(t) for t in json.loads(body["info"])["infotexts"][1:]]
    assert [c["Clip skip"] for c in cells] == ["1", "2"]
    assert body["images"][1] != body["images"][2]
    assert easel.client.get("/sdapi/v1/options").json()["CLIP_stop_at_last_layers"] == 1


def test_prompts_from_file_bad_option_is_422(easel):
    response = easel.client.post("/sdapi/v1/txt2img", json=small(
        script_name="Prompts from file or textbox", script_args=[False, False, "start", "--prompt a --nope 1"]))
    assert response.status_code == 422 and "unknown option '--nope'" in response.json()["detail"]


def test_batch_grid_comes_first_only_when_images_are_saved(easel):
    unsaved = easel.client.post("/sdapi/v1/txt2img", json=small(seed=8, steps=1, batch_size=2)).json()
    assert len(unsaved["images"]) == 2                       # A1111: no grid unless save_images
    saved = easel.client.post("/sdapi/v1/txt2img", json=small(seed=8, steps=1, batch_size=2,
                                                              save_images=True)).json()
    assert len(saved["images"]) == 3
    grid, first, second = (decode_png(b) for b in saved["images"])
    assert grid.size == (128, 64)
    assert grid.crop((0, 0, 64, 64)).tobytes() == first.tobytes()
    assert grid.crop((64, 0, 128, 64)).tobytes() == second.tobytes()
    info = json.loads(saved["info"])
    assert info["index_of_first_image"] == 1 and info["all_seeds"] == [8, 9]
    assert len(info["infotexts"]) == 3 and grid.info["parameters"] == info["infotexts"][0]
    folder = easel.shared.paths.data_dir / "outputs" / "txt2img-grids"
    saved_grids = list(folder.rglob("grid-*.png"))
    assert len(saved_grids) == 1
    assert "Seed: 8" in image_files.read_infotext(str(saved_grids[0]))


@pytest.mark.parametrize("fmt", ["jpg", "webp"])
def test_samples_format_saves_infotext_in_exif(easel, fmt):
    client = easel.client
    assert client.post("/sdapi/v1/options", json={"samples_format": fmt}).status_code == 200
    try:
        started = time.time()
        body = client.post("/sdapi/v1/txt2img", json=small(seed=41, steps=1, save_images=True,
                                                           prompt="a cat, \"quoted\"")).json()
    finally:
        client.post("/sdapi/v1/options", json={"samples_format": "png"})
    text = json.loads(body["info"])["infotexts"][0]
    folder = easel.shared.paths.data_dir / "outputs" / "txt2img-images"
    files = [f for f in folder.rglob(f"*.{fmt}") if f.stat().st_mtime >= started - 1]
    assert len(files) == 1
    assert files[0].parent.parent == folder and files[0].parent.name == time.strftime("%Y-%m-%d")  # one date level
    with Image.open(files[0]) as image:
        assert image.format == {"jpg": "JPEG", "webp": "WEBP"}[fmt]
        assert image_files.read_infotext(image) == text
