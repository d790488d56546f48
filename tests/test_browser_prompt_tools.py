"""Prompt tools in a real browser: the token counter follows typing, a LoRA card click adds its tag,
📋 writes the chosen style into the prompt boxes.

The real app.py in a subprocess, Chromium via playwright (tests/browser_helpers.py).
"""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.browser_helpers import (CHROMIUM, chromium_page, set_slider, tiny_sd1_app, wait_for_model_ready,
                                   watch_generation)

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"needs Chromium at {CHROMIUM}")

PROMPT = "#txt2img_prompt textarea"
SCREENSHOT = "/tmp/easel-prompt-tools.png"


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    import torch
    from safetensors.torch import save_file

    def lora_and_styles(data_dir):
        lora_dir = data_dir / "Lora"
        lora_dir.mkdir()
        save_file({"lora_unet_x.alpha": torch.tensor(1.0)}, str(lora_dir / "ink_style.safetensors"))
        (data_dir / "styles.csv").write_text('name,prompt,negative_prompt\nCinematic,"film still of {prompt}",cartoon\n',
                                             encoding="utf-8")
        return ("--lora-dir", str(lora_dir))

    with tiny_sd1_app(tmp_path_factory, prepare=lora_and_styles) as server:
        yield server


@pytest.fixture
def page(app):
    with chromium_page() as page:
        page.goto(app.url)
        page.wait_for_selector(PROMPT, timeout=60_000)
        yield page


def _counter(page) -> str:
    return page.locator("#txt2img_token_counter").inner_text().strip()


def _wait_counter(page, expected: str, timeout: float = 60_000) -> None:
    page.wait_for_function(
        "(want) => document.querySelector('#txt2img_token_counter')?.innerText.trim() === want", arg=expected,
        timeout=timeout)


def test_token_counter_follows_typing_and_lora_card_adds_its_tag(page):
    assert _counter(page) == "0/75"
    page.locator(PROMPT).press_sequentially("a red cat", delay=20)
    # the first count loads the tokenizer (transformers import): slow on a busy 2-core machine
    _wait_counter(page, "3/75", timeout=180_000)
    page.locator(PROMPT).fill(" ".join(["cat"] * 80))
    _wait_counter(page, "80/150")
    page.locator(PROMPT).fill("a red cat")
    _wait_counter(page, "3/75")

    page.locator("#txt2img_extra_networks").get_by_text("Extra networks").click()
    card = page.locator('#txt2img_extra_cards .easel-card[data-kind="lora"][data-name="ink_style"]')
    card.wait_for(timeout=60_000)
    card.click()
    page.wait_for_function(
        "(sel) => document.querySelector(sel).value === 'a red cat <lora:ink_style:1>'", arg=PROMPT, timeout=30_000)
    _wait_counter(page, "3/75", timeout=10_000)    # the tag is not text the encoder sees
    page.screenshot(path=SCREENSHOT, full_page=True)

    page.locator("#txt2img_extra_search input, #txt2img_extra_search textarea").first.fill("nothing-matches")
    page.wait_for_function("() => document.querySelectorAll('#txt2img_extra_cards .easel-card').length === 0",
                           timeout=30_000)


def test_apply_style_writes_it_into_the_prompt_boxes(page):
    page.locator(PROMPT).fill("a cat")
    page.locator("#txt2img_styles input").click()
    page.get_by_role("option", name="Cinematic").click()
    page.locator("#txt2img_style_apply").click()
    page.wait_for_function("(sel) => document.querySelector(sel).value === 'film still of a cat'", arg=PROMPT,
                           timeout=30_000)
    assert page.locator("#txt2img_neg_prompt textarea").input_value() == "cartoon"


def test_selected_style_is_applied_when_generating(page):
    wait_for_model_ready(page)
    page.locator(PROMPT).fill("a dog")
    page.locator("#txt2img_styles input").click()
    page.get_by_role("option", name="Cinematic").click()
    page.keyboard.press("Escape")
    for slider, value in (("txt2img_steps", 2), ("txt2img_width", 64), ("txt2img_height", 64)):
        set_slider(page, slider, value)
    page.locator("#txt2img_generate").click()
    _, final = watch_generation(page)
    assert "film still of a dog" in final["info"] and "Negative prompt: cartoon" in final["info"]
    assert page.locator(PROMPT).input_value() == "a dog"      # the box keeps what the user typed
