"""The ↙️ paste button in a real browser: generate with hires fix, paste the infotext back, get the same image."""
from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.browser_helpers import CHROMIUM, set_number, set_slider, watch_generation
from tests.test_browser import app, page  # noqa: F401  (fixtures: the real app.py and a Chromium page)

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"needs Chromium at {CHROMIUM}")


def _shown_image(page, final) -> Image.Image:  # noqa: F811
    src = page.evaluate("(src) => new URL(src, location.href).href", final["gallery"][0])
    response = page.request.get(src)
    assert response.ok
    return Image.open(io.BytesIO(response.body()))


def _toggle_hires(page) -> None:  # noqa: F811
    page.locator("#txt2img_hr").get_by_role("button", name=re.compile(r"^Hires\. fix")).click()


def _hires_checkbox(page) -> bool:  # noqa: F811
    return page.locator("#txt2img_hr-checkbox input[type=checkbox]").is_checked()


def test_paste_infotext_sets_fields_and_regenerates_the_same_image(app, page):  # noqa: F811
    page.locator("#txt2img_prompt textarea").fill("a yellow kite")
    set_slider(page, "txt2img_steps", 2)
    set_slider(page, "txt2img_width", 64)
    set_slider(page, "txt2img_height", 64)
    set_number(page, "txt2img_seed", 777)
    _toggle_hires(page)                 # opening the accordion turns hires fix on
    page.wait_for_function("() => document.querySelector('#txt2img_hr-checkbox input').checked", timeout=10_000)
    set_slider(page, "txt2img_hr_scale", 1.5)
    set_slider(page, "txt2img_denoising_strength", 0.4)
    page.locator("#txt2img_generate").click()
    _, first = watch_generation(page)
    assert "Hires upscale: 1.5" in first["info"], first["info"]
    original = _shown_image(page, first)
    assert original.size == (96, 96)
    text = original.info["parameters"]

    # change what the infotext names, turn hires fix off, then paste the infotext back
    _toggle_hires(page)
    page.wait_for_function("() => !document.querySelector('#txt2img_hr-checkbox input').checked", timeout=10_000)
    set_slider(page, "txt2img_steps", 9)
    set_number(page, "txt2img_seed", -1)
    page.locator("#txt2img_prompt textarea").fill(text)
    page.locator("#txt2img_paste").click()
    page.wait_for_function("() => document.querySelector('#txt2img_seed input')?.value === '777'", timeout=10_000)
    assert page.locator("#txt2img_prompt textarea").input_value() == "a yellow kite"
    assert page.locator("#txt2img_steps input[type=number]").input_value() == "2"
    assert _hires_checkbox(page)
    assert page.locator("#txt2img_hr_scale input[type=number]").input_value() == "1.5"

    page.locator("#txt2img_generate").click()
    _, second = watch_generation(page)
    again = _shown_image(page, second)
    assert again.info["parameters"] == text
    assert np.array_equal(np.asarray(again), np.asarray(original))
    assert re.search(r"Seed: 777\b", second["info"])


@pytest.mark.parametrize("target", ["img2img", "inpaint"])
def test_png_info_sends_image_and_fields_to_img2img_and_inpaint(app, page, tmp_path, target):  # noqa: F811
    from PIL import PngImagePlugin

    meta = PngImagePlugin.PngInfo()
    meta.add_text("parameters", "a harbour\nNegative prompt: rain\n"
                                "Steps: 6, Sampler: Euler, CFG scale: 4, Seed: 31337, Size: 128x96, "
                                "Denoising strength: 0.35")
    path = tmp_path / "sent.png"
    Image.new("RGB", (40, 30), "teal").save(path, pnginfo=meta)

    page.get_by_role("tab", name="PNG Info").click()
    page.locator("#pnginfo_image input[type=file]").set_input_files(str(path))
    page.wait_for_function("() => document.querySelector('#pnginfo_generation_info')?.innerText.includes('31337')",
                           timeout=30_000)
    page.locator(f"#pnginfo_send_to_{target}").click()
    page.wait_for_function("() => document.querySelector('#img2img_seed input')?.value === '31337'", timeout=10_000)
    assert page.locator("#img2img_prompt textarea").input_value() == "a harbour"
    assert page.locator("#img2img_neg_prompt textarea").input_value() == "rain"
    assert page.locator("#img2img_width input[type=number]").input_value() == "128"
    assert page.locator("#img2img_denoising_strength input[type=number]").input_value() == "0.35"
    # Generate shows that the image arrived in the right sub-tab: inpaint asks for a mask, img2img runs
    if target == "img2img":
        set_slider(page, "img2img_steps", 1)
    page.locator("#img2img_generate").click()
    expected = "Size: 128x96" if target == "img2img" else "mask: paint over the area to repaint first"
    page.wait_for_function(f"() => document.querySelector('#img2img_info')?.innerText.includes({expected!r})",
                           timeout=120_000)
    assert "upload an image first" not in page.locator("#img2img_info").inner_text()
