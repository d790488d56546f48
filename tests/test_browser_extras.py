"""The Extras tab in a real browser: upload an image, upscale it 2x with Lanczos, see the result with its infotext.

Also PNG Info's "Send to extras". Uses the real app.py (tests/test_browser.py's fixtures) and Chromium.
"""
from __future__ import annotations

import io

from PIL import Image, PngImagePlugin

from tests.browser_helpers import set_slider
from tests.test_browser import app, page  # noqa: F401  (fixtures: the real app.py and a Chromium page)

INFOTEXT = ("a blue square\nNegative prompt: noise\n"
            "Steps: 9, Sampler: Euler, CFG scale: 6, Seed: 777, Size: 48x32, Model: elsewhere")


def _source(tmp_path) -> str:
    meta = PngImagePlugin.PngInfo()
    meta.add_text("parameters", INFOTEXT)
    image = Image.new("RGB", (48, 32))
    image.putdata([(x * 5, y * 7, 200) for y in range(32) for x in range(48)])
    path = tmp_path / "source.png"
    image.save(path, pnginfo=meta)
    return str(path)


def _choose(page, dropdown_id: str, option: str) -> None:  # noqa: F811
    page.locator(f"#{dropdown_id} input").click()
    page.get_by_role("option", name=option, exact=True).click()
    page.keyboard.press("Escape")


def _upscale_and_read_result(page) -> Image.Image:  # noqa: F811
    set_slider(page, "extras_upscaling_resize", 2)
    _choose(page, "extras_upscaler_1", "Lanczos")
    page.locator("#extras_generate").click()
    page.wait_for_selector("#extras_gallery img", timeout=60_000)
    page.wait_for_function("() => document.querySelector('#html_info_extras')?.innerText.includes('Postprocess')",
                           timeout=60_000)
    src = page.locator("#extras_gallery img").first.get_attribute("src")
    response = page.request.get(page.evaluate("(src) => new URL(src, location.href).href", src))
    assert response.ok
    image = Image.open(io.BytesIO(response.body()))
    image.load()
    return image


def test_extras_upscales_2x_with_lanczos_and_keeps_the_infotext(app, page, tmp_path):  # noqa: F811
    page.get_by_role("tab", name="Extras").click()
    page.locator("#extras_image input[type=file]").set_input_files(_source(tmp_path))
    page.wait_for_selector("#extras_image img", timeout=30_000)

    image = _upscale_and_read_result(page)
    assert image.format == "PNG" and image.size == (96, 64)
    assert image.info["parameters"] == INFOTEXT + ", Postprocess upscale by: 2, Postprocess upscaler: Lanczos"
    info = page.locator("#html_info_extras").inner_text()
    assert "Seed: 777" in info and "Postprocess upscaler: Lanczos" in info

    saved = sorted((app.data_dir / "outputs" / "extras-images").glob("*.png"))
    assert saved, "nothing saved to outputs/extras-images"
    with Image.open(saved[-1]) as on_disk:
        assert on_disk.size == (96, 64) and on_disk.info["parameters"] == image.info["parameters"]


def test_png_info_sends_the_image_to_extras(app, page, tmp_path):  # noqa: F811
    page.get_by_role("tab", name="PNG Info").click()
    page.locator("#pnginfo_image input[type=file]").set_input_files(_source(tmp_path))
    page.wait_for_function("() => document.querySelector('#pnginfo_generation_info')?.innerText.includes('Seed: 777')",
                           timeout=30_000)
    page.locator("#pnginfo_send_to_extras").click()
    page.wait_for_selector("#extras_image img", timeout=30_000)
    assert page.locator("#extras_generate").is_visible()

    image = _upscale_and_read_result(page)
    assert image.size == (96, 64) and image.info["parameters"].startswith(INFOTEXT)
