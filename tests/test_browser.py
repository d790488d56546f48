"""The page in a real browser: the real app.py in a subprocess, Chromium via playwright.

What a user must see: the model status turns Ready; Generate shows live
previews that change and a progress bar that moves before the final image;
the gallery image carries its infotext (also inside the downloaded PNG);
Interrupt stops a long job early and the page keeps working.
"""
from __future__ import annotations

import io
import re
from pathlib import Path

import pytest

from tests.browser_helpers import (CHROMIUM, chromium_page, set_slider, snapshot, tiny_sd1_app, wait_for_model_ready,
                                   watch_generation)

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"needs Chromium at {CHROMIUM}")

SCREENSHOT = "/tmp/easel-txt2img.png"
# Large enough that a tiny model's job lasts a few seconds here, so previews are observable.
SIZE = 192


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    with tiny_sd1_app(tmp_path_factory) as server:
        yield server


@pytest.fixture
def page(app):
    with chromium_page() as page:
        page.goto(app.url)
        page.wait_for_selector("#txt2img_prompt textarea", timeout=60_000)
        wait_for_model_ready(page)
        yield page


def _step(text: str | None) -> tuple[int, int] | None:
    match = re.search(r"Step (\d+)/(\d+)", text or "")
    return (int(match.group(1)), int(match.group(2))) if match else None


def _generate(page, prompt: str, steps: int, on_snapshot=None):
    page.locator("#txt2img_prompt textarea").fill(prompt)
    set_slider(page, "txt2img_steps", steps)
    set_slider(page, "txt2img_width", SIZE)
    set_slider(page, "txt2img_height", SIZE)
    page.locator("#txt2img_generate").click()
    return watch_generation(page, on_snapshot=on_snapshot)


def test_generate_streams_previews_and_progress_then_shows_image_with_infotext(app, page):
    seen, final = _generate(page, "a red apple on a table", steps=16)

    previews = {s["preview_src"] for s in seen if s["preview_src"]}
    assert len(previews) >= 2, f"expected at least two different live previews, saw {len(previews)}"
    widths = [s["bar_width"] for s in seen if s["bar_width"]]
    assert len(set(widths)) >= 2, f"progress bar width never changed: {widths[:5]}"
    steps = [_step(s["progress_text"]) for s in seen if _step(s["progress_text"])]
    assert len({n for n, _ in steps}) >= 2 and all(total == 16 for _, total in steps), steps

    assert len(final["gallery"]) >= 1, "no image in the gallery after the job"
    info = final["info"]
    assert "a red apple on a table" in info
    assert "Steps: 16" in info and "Seed:" in info and f"Size: {SIZE}x{SIZE}" in info

    # The image the browser shows (and downloads) is a PNG with the same infotext.
    from PIL import Image

    response = page.request.get(page.evaluate("(src) => new URL(src, location.href).href", final["gallery"][0]))
    assert response.ok
    image = Image.open(io.BytesIO(response.body()))
    assert image.format == "PNG" and image.size == (SIZE, SIZE)
    assert "Steps: 16" in image.info.get("parameters", "")

    page.screenshot(path=SCREENSHOT, full_page=True)


def test_reuse_seed_button_copies_the_seed_of_the_shown_image(app, page):
    _, final = _generate(page, "a blue cube", steps=2)
    seed = re.search(r"Seed: (\d+)", final["info"]).group(1)
    page.locator("#txt2img_reuse_seed").click()
    page.wait_for_function(f"() => document.querySelector('#txt2img_seed input').value === '{seed}'",
                           timeout=10_000)
    page.locator("#txt2img_random_seed").click()
    page.wait_for_function("() => document.querySelector('#txt2img_seed input').value === '-1'", timeout=10_000)


def test_interrupt_stops_a_long_job_early_and_the_page_keeps_working(app, page):
    pressed = []

    def interrupt_after_a_few_steps(snap):
        step = _step(snap["progress_text"])
        if not pressed and step and step[0] >= 2:
            pressed.append(step[0])
            page.locator("#txt2img_interrupt").click()

    seen, final = _generate(page, "a long job", steps=50, on_snapshot=interrupt_after_a_few_steps)
    assert pressed, "the job never reached step 2, so Interrupt was not pressed"
    last_step = max(_step(s["progress_text"])[0] for s in seen if _step(s["progress_text"]))
    assert last_step < 40, f"the job ran to step {last_step} of 50 after Interrupt at step {pressed[0]}"
    stopped = re.search(r"Interrupted at step (\d+)/50", final["info"])
    assert stopped and int(stopped.group(1)) < 40, final["info"]

    # The page is still usable: the next Generate completes normally.
    _, after = _generate(page, "after the interrupt", steps=3)
    assert "Interrupted" not in after["info"]
    assert "after the interrupt" in after["info"] and "Steps: 3" in after["info"]
    assert snapshot(page)["gallery"], "no image after the follow-up Generate"


def test_png_info_reads_dropped_image_and_sends_it_to_txt2img(app, page, tmp_path):
    from PIL import Image, PngImagePlugin

    infotext = ("a lighthouse at dusk\nNegative prompt: fog\n"
                "Steps: 7, Sampler: Euler a, Schedule type: Karras, CFG scale: 5.5, Seed: 4242, Size: 320x256")
    meta = PngImagePlugin.PngInfo()
    meta.add_text("parameters", infotext)
    path = tmp_path / "made-elsewhere.png"
    Image.new("RGB", (32, 32), "navy").save(path, pnginfo=meta)

    page.get_by_role("tab", name="PNG Info").click()
    page.locator("#pnginfo_image input[type=file]").set_input_files(str(path))
    page.wait_for_function("() => document.querySelector('#pnginfo_generation_info')?.innerText.includes('Seed: 4242')",
                           timeout=30_000)
    assert "Negative prompt: fog" in page.locator("#pnginfo_generation_info").inner_text()

    page.locator("#pnginfo_send_to_txt2img").click()
    page.wait_for_function("() => document.querySelector('#txt2img_seed input')?.value === '4242'", timeout=10_000)
    assert page.locator("#txt2img_prompt textarea").input_value() == "a lighthouse at dusk"
    assert page.locator("#txt2img_neg_prompt textarea").input_value() == "fog"
    assert page.locator("#txt2img_steps input[type=number]").input_value() == "7"
    assert page.locator("#txt2img_width input[type=number]").input_value() == "320"
    assert page.locator("#txt2img_height input[type=number]").input_value() == "256"
    assert page.locator("#txt2img_scheduler input").input_value() == "Karras"


def test_settings_apply_changes_a_setting_and_writes_config_json(app, page):
    import json

    page.get_by_role("tab", name="Settings").click()
    set_slider(page, "setting_show_progress_every_n_steps", 3)
    page.locator("#settings_submit").click()
    page.wait_for_function("() => document.querySelector('#settings_result')?.innerText.includes('changed')",
                           timeout=30_000)
    assert "Live preview display period" in page.locator("#settings_result").inner_text()
    config = json.loads((app.data_dir / "config.json").read_text())
    assert config["show_progress_every_n_steps"] == 3

