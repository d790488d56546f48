"""img2img sub-tabs in a real browser: a stroke drawn with the mouse on the Sketch canvas ends up in the
generated image; a mask drawn on the Inpaint canvas repaints only that band; the Batch sub-tab processes a
folder and reports skipped files."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.browser_helpers import CHROMIUM, set_slider
from tests.test_browser import app, page  # noqa: F401  (fixtures: the real app.py and a Chromium page)

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"needs Chromium at {CHROMIUM}")
BLUE = (30, 60, 200)


def _open_sub_tab(page, name: str) -> None:
    page.get_by_role("tab", name="img2img", exact=True).first.click()
    page.locator("#mode_img2img").get_by_role("tab", name=name, exact=True).click()


def _upload(page, elem_id: str, picture: Path) -> None:
    """Put a picture on an image editor's canvas: it shows "Upload an image" until the picture is there (a file
    chosen while the just-opened tab is still mounting can be missed, so it is chosen again)."""
    page.locator(f"#{elem_id} canvas").first.wait_for(state="visible", timeout=30_000)
    placeholder = page.locator(f"#{elem_id}").get_by_text("Upload an image")
    for _ in range(3):
        page.locator(f"#{elem_id} input[type=file]").set_input_files(str(picture))
        try:
            placeholder.wait_for(state="hidden", timeout=10_000)
            return
        except Exception:
            continue
    raise AssertionError(f"the picture never appeared on #{elem_id}")


def _draw_horizontal_stroke(page, elem_id: str) -> None:
    """Pick the image editor's brush and drag it across the middle of its canvas with the mouse."""
    brush = page.locator(f'#{elem_id} button[title="Brush"]')
    if "highlight" not in (brush.get_attribute("class") or ""):
        brush.click()
    box = page.locator(f"#{elem_id} canvas").first.bounding_box()
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(cx - 60, cy)
    page.mouse.down()
    for step in range(1, 13):
        page.mouse.move(cx - 60 + step * 10, cy)
    page.mouse.up()


def _settings(page, denoising) -> None:
    page.locator("#img2img_prompt textarea").fill("a blue wall")
    set_slider(page, "img2img_steps", 1)
    set_slider(page, "img2img_width", 64)
    set_slider(page, "img2img_height", 64)
    set_slider(page, "img2img_denoising_strength", denoising)


def _generate_and_wait(page, expected: str) -> str:
    page.locator("#img2img_generate").click()
    page.wait_for_function(f"() => document.querySelector('#img2img_info')?.innerText.includes({expected!r})",
                           timeout=240_000)
    return page.locator("#img2img_info").inner_text()


def _shown_image(page) -> Image.Image:
    src = page.locator("#img2img_gallery img").first.get_attribute("src")
    response = page.request.get(page.evaluate("(src) => new URL(src, location.href).href", src))
    assert response.ok
    return Image.open(io.BytesIO(response.body())).convert("RGB")


def test_stroke_drawn_on_the_sketch_canvas_is_in_the_generated_image(app, page, tmp_path):  # noqa: F811
    picture = tmp_path / "blue.png"
    Image.new("RGB", (64, 64), BLUE).save(picture)
    _open_sub_tab(page, "Sketch")
    _upload(page, "img2img_sketch", picture)
    _draw_horizontal_stroke(page, "img2img_sketch")
    _settings(page, denoising=0)                  # strength 0: the init image (the drawing) comes back as is
    info = _generate_and_wait(page, "Size: 64x64")
    assert "upload an image first" not in info
    image = _shown_image(page)
    image.save("/tmp/easel-img2img-sketch.png")
    shown = np.asarray(image).astype(int)
    red = (shown[..., 0] > 150) & (shown[..., 2] < 120)
    assert red[30:34].sum() >= 10, "the red stroke is not in the generated image"
    rows, cols = np.nonzero(red)
    assert abs(rows.mean() - 32) < 6 and abs(cols.mean() - 32) < 6   # where it was drawn: across the middle
    assert tuple(shown[2, 2]) == BLUE and tuple(shown[61, 61]) == BLUE   # the rest is the uploaded picture


def test_batch_tab_processes_a_folder_and_names_outputs_like_inputs(app, page, tmp_path):  # noqa: F811
    source, out = tmp_path / "in", tmp_path / "out"
    source.mkdir()
    for name in ("one.png", "two.png"):
        Image.new("RGB", (64, 64), BLUE).save(source / name)
    (source / "list.txt").write_text("not a picture")
    _open_sub_tab(page, "Batch")
    page.locator("#img2img_batch_input_dir textarea").fill(str(source))
    page.locator("#img2img_batch_output_dir textarea").fill(str(out))
    _settings(page, denoising=0.5)
    info = _generate_and_wait(page, "Steps:")
    assert "skipped list.txt (not an image)" in info
    assert sorted(p.name for p in out.iterdir()) == ["one.png", "two.png"]
    assert page.locator("#img2img_gallery img").count() >= 2
    # a folder that does not exist is refused before anything is queued
    page.locator("#img2img_batch_input_dir textarea").fill(str(tmp_path / "missing"))
    _generate_and_wait(page, "is not an existing folder")


def test_mask_drawn_on_the_inpaint_canvas_repaints_only_the_masked_band(app, page, tmp_path):  # noqa: F811
    picture = tmp_path / "blue.png"
    # a large picture: the editor's brush has a fixed size in image pixels, which would cover all of a 64 px one
    Image.new("RGB", (512, 512), BLUE).save(picture)
    _open_sub_tab(page, "Inpaint")
    _upload(page, "img2maskimg", picture)
    _draw_horizontal_stroke(page, "img2maskimg")   # the mask: a band through the middle
    _settings(page, denoising=1)                  # strength 1: the masked band is repainted from noise
    info = _generate_and_wait(page, "Size: 64x64")
    assert "Mask blur" in info, info              # it ran as inpainting
    image = _shown_image(page)
    image.save("/tmp/easel-img2img-inpaint.png")
    shown = np.asarray(image).astype(int)
    changed = np.abs(shown - np.array(BLUE)).sum(axis=2) > 30
    assert changed[28:36].sum() >= 10, "nothing was repainted where the mask was drawn"
    rows, _ = np.nonzero(changed)
    assert abs(rows.mean() - 32) < 8                                   # around the band
    assert not changed[:12].any() and not changed[-12:].any()         # far from it: the upload, untouched
