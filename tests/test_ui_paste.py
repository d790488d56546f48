"""The ↙️ paste path: an Easel image's infotext -> the tab's fields -> the same image again.

Runs the page's own functions (paste parsing, the txt2img/img2img tabs'
`build_processing`) with a tiny random model, without a browser.
"""
from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from modules import hires, images, processing, script_callbacks
from modules.samplers import SAMPLERS, SCHEDULES
from modules.ui import img2img as img2img_tab
from modules.ui import paste
from modules.ui import txt2img as txt2img_tab
from tests.factories import make_tiny_checkpoint

torch.set_num_threads(1)

CHOICES = {"sampler": [s.name for s in SAMPLERS], "scheduler": [s.label for s in SCHEDULES],
           "hr_upscaler": hires.upscaler_names(), "hr_sampler_name": [hires.SAME_SAMPLER, *[s.name for s in SAMPLERS]]}


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    from modules import sd_models

    path = make_tiny_checkpoint(tmp_path_factory.mktemp("ckpt"), "sd1")
    return sd_models.load_model(str(path), torch.device("cpu"), torch.float32)


def _run(model, p):
    p.sd_model = model
    p.do_not_save_samples = True
    return processing.process_images(p)


def _through_png(image, text) -> str:
    """What a user pastes: the infotext read back from the saved PNG."""
    return images.read_infotext(Image.open(io.BytesIO(images.image_to_png_bytes(image, text))))


def _pasted(text, fields, before: dict | None = None) -> dict:
    """The tab's values after pasting `text` over boxes that held `before`."""
    values = dict(before or {})
    values.update(paste.field_values(paste.pasted_params(text), fields, CHOICES))
    return values


def _same(a, b) -> bool:
    return np.array_equal(np.asarray(a), np.asarray(b))


def test_pasted_hires_and_variation_infotext_regenerates_the_identical_image(model):
    original = _run(model, processing.StableDiffusionProcessingTxt2Img(
        prompt="a red [circle:square:2]", negative_prompt="blurry", seed=123, subseed=77, subseed_strength=0.3,
        sampler_name="Euler a", scheduler="Simple", steps=4, cfg_scale=5.5, width=64, height=80,
        enable_hr=True, hr_scale=1.5, hr_upscaler="Latent (bicubic)", hr_second_pass_steps=2,
        denoising_strength=0.45, hr_sampler_name="DPM++ 2M", hr_prompt="a blue circle"))
    text = _through_png(original.images[0], original.infotexts[0])

    values = _pasted(text, paste.TXT2IMG_FIELDS, {"batch_count": 1, "batch_size": 1})
    assert values["enable_hr"] is True and values["hr_upscaler"] == "Latent (bicubic)"
    assert values["hr_sampler_name"] == "DPM++ 2M" and values["hr_prompt"] == "a blue circle"
    again = _run(model, txt2img_tab.build_processing(values))

    assert again.images[0].size == original.images[0].size == (96, 120)
    assert _same(again.images[0], original.images[0])
    assert again.infotexts[0] == original.infotexts[0]


def test_pasting_a_plain_infotext_turns_off_hires_and_variation_left_in_the_boxes(model):
    original = _run(model, processing.StableDiffusionProcessingTxt2Img(
        prompt="a green square", seed=5, sampler_name="DPM++ 2M", steps=3, width=64, height=64))
    text = original.infotexts[0]
    dirty = {"batch_count": 1, "batch_size": 1, "enable_hr": True, "hr_second_pass_steps": 7,
             "subseed": 9, "subseed_strength": 0.5, "seed_resize_from_w": 128, "seed_resize_from_h": 128,
             "denoising_strength": 0.2}
    values = _pasted(text, paste.TXT2IMG_FIELDS, dirty)
    assert values["enable_hr"] is False and values["subseed_strength"] == 0.0
    again = _run(model, txt2img_tab.build_processing(values))
    assert again.images[0].size == (64, 64)
    assert _same(again.images[0], original.images[0])


def test_legacy_sampler_name_and_unknown_values_are_handled():
    text = "cat\nSteps: 9, Sampler: DPM++ 2M Karras, CFG scale: 6, Seed: 3, Size: 320x256, Hires upscaler: Magic"
    values = paste.field_values(paste.pasted_params(text), paste.TXT2IMG_FIELDS, CHOICES)
    assert values["sampler"] == "DPM++ 2M" and values["scheduler"] == "Karras"
    assert (values["width"], values["height"], values["steps"], values["cfg_scale"]) == (320, 256, 9, 6.0)
    assert "hr_upscaler" not in values          # not offered by the dropdown: the box keeps its value
    assert values["enable_hr"] is False        # no denoising strength: hires fix was not on


def test_infotext_pasted_callbacks_can_change_the_values():
    def callback(infotext, params):
        assert infotext.startswith("dog")
        params["Steps"] = "33"

    script_callbacks.on_infotext_pasted(callback)
    try:
        values = paste.field_values(paste.pasted_params("dog\nSteps: 9, Sampler: Euler a, Seed: 1, Size: 64x64"),
                                    paste.TXT2IMG_FIELDS, CHOICES)
    finally:
        script_callbacks.remove_callbacks_for_function(callback)
    assert values["steps"] == 33


def test_updates_skip_fields_the_text_does_not_name():
    import gradio as gr

    updates = paste.updates_for("owl\nSteps: 9, Sampler: Euler a, Seed: 1", ["prompt", "steps", "width"],
                                paste.TXT2IMG_FIELDS, CHOICES)
    assert updates[0]["value"] == "owl" and updates[1]["value"] == 9
    assert updates[2] == gr.skip()
    assert all(u == gr.skip() for u in paste.updates_for("  ", ["prompt"], paste.TXT2IMG_FIELDS, CHOICES))


def _img2img(values: dict):
    """The img2img tab's build_processing takes the sampler as `sampler_name` (its attribute is `sampler`)."""
    return img2img_tab.build_processing(**{("sampler_name" if k == "sampler" else k): v for k, v in values.items()})


def test_pasted_img2img_infotext_regenerates_the_identical_image(model):
    init = Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    fields = dict(mode="img2img", init_image=init, sketch=None, upload_image=None, upload_mask=None,
                  batch_count=1, batch_size=1, resize_mode=0, mask_blur=4, mask_mode=0, inpainting_fill=1,
                  inpaint_area=0, padding=32)
    first = dict(fields, prompt="a tree", negative_prompt="", sampler="Euler", scheduler="Automatic", steps=4,
                 cfg_scale=7.0, width=64, height=64, seed=99, denoising_strength=0.6)
    original = _run(model, _img2img(first))
    text = _through_png(original.images[0], original.infotexts[0])
    dirty = dict(fields, prompt="x", negative_prompt="y", sampler="Heun", scheduler="Karras", steps=9,
                 cfg_scale=2.0, width=128, height=128, seed=1, denoising_strength=0.1)
    values = _pasted(text, paste.IMG2IMG_FIELDS, dirty)
    again = _run(model, _img2img(values))
    assert _same(again.images[0], original.images[0])


def test_result_info_shows_the_jobs_warnings_next_to_the_infotext():
    from types import SimpleNamespace

    warning = "LoRA 'gone' not found (looked for gone.safetensors in the Lora folder)"
    result = SimpleNamespace(images=[Image.new("RGB", (8, 8))], infotexts=["cat\nSteps: 1, Seed: 1, Size: 8x8"],
                             info="", warnings=[warning])
    job = SimpleNamespace(status="done", result=result, error=None)
    *_, info, texts, selected = list(txt2img_tab._finish(job))[-1]
    assert "easel-warnings" in info and "LoRA &#x27;gone&#x27; not found" in info
    assert info.index("easel-warnings") < info.index("easel-infotext") and texts == result.infotexts
    result.warnings = []
    *_, info, _, _ = list(txt2img_tab._finish(job))[-1]
    assert "easel-warnings" not in info


def test_extension_infotext_fields_get_their_values():
    import gradio as gr

    with gr.Blocks():
        enabled, weight, word = gr.Checkbox(value=False), gr.Slider(0, 2, value=1.0), gr.Textbox(value="")
    params = paste.pasted_params("owl\nSteps: 9, Sampler: Euler a, Seed: 1, My ext: True, My weight: 0.4")
    assert paste.script_field_update(enabled, "My ext", params)["value"] is True
    assert paste.script_field_update(weight, "My weight", params)["value"] == 0.4
    assert paste.script_field_update(word, lambda d: d["Steps"] + "!", params)["value"] == "9!"
    assert paste.script_field_update(word, "Not there", params) == gr.skip()
    from modules import extensions

    before = len(extensions.errors)
    assert paste.script_field_update(word, lambda d: d["missing"], params, "ext-x") == gr.skip()
    assert [e.extension for e in extensions.errors[before:]] == ["ext-x"]      # reported, not raised
    del extensions.errors[before:]
