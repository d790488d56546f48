"""Extension scripts on img2img (API and page), warnings in the API info, the page's new controls.

Uses the fixture extensions of tests/test_extensions.py (its `easel` app).
"""
from __future__ import annotations

import base64
import io
import json

import numpy as np
from PIL import Image

from tests.test_api_support import small
from tests.test_extensions import easel  # noqa: F401  (the fixture: the app with the fixture extensions)


def _b64(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _img2img(client, **fields):
    picture = Image.fromarray(np.random.default_rng(1).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    body = small(init_images=[_b64(picture)], denoising_strength=0.5, seed=11, steps=2, **fields)
    return client.post("/sdapi/v1/img2img", json=body)


def test_img2img_api_runs_the_selected_script_with_its_args(easel):  # noqa: F811
    _, _, client = easel
    response = _img2img(client, script_name="seed copies", script_args=[2])
    assert response.status_code == 200, response.text
    info = json.loads(response.json()["info"])
    assert len(response.json()["images"]) == 2 and info["all_seeds"] == [11, 12]
    assert "Copies: 2" in info["infotexts"][0]


def test_img2img_api_runs_always_on_scripts_with_their_args(easel):  # noqa: F811
    _, _, client = easel
    response = _img2img(client, alwayson_scripts={"Prompt Rewriter": {"args": [True, "inked"]}})
    assert response.status_code == 200, response.text
    info = json.loads(response.json()["info"])
    assert info["all_prompts"] == ["a red circle, as pencil sketch, inked"]
    assert "Rewriter: rw1" in info["infotexts"][0]


def test_img2img_api_unknown_script_is_422_naming_the_available_ones(easel):  # noqa: F811
    _, _, client = easel
    response = _img2img(client, script_name="no such script")
    assert response.status_code == 422
    assert "script_name" in response.text and "seed copies" in response.text


def test_api_info_lists_warnings_such_as_an_unknown_lora(easel):  # noqa: F811
    _, _, client = easel
    response = client.post("/sdapi/v1/txt2img", json=small(prompt="a cat <lora:not-there:0.7>", seed=3, steps=1))
    assert response.status_code == 200, response.text
    info = json.loads(response.json()["info"])
    assert any("not-there" in w and "not found" in w for w in info["warnings"]), info["warnings"]
    clean = json.loads(client.post("/sdapi/v1/txt2img", json=small(seed=3, steps=1)).json()["info"])
    assert not any("LoRA" in w for w in clean["warnings"])
    # the fixture's broken extension fails in process(): reported, the job goes on
    assert any("Bad Process.process()" in w for w in clean["warnings"]), clean["warnings"]


def test_page_has_img2img_scripts_hires_paste_and_send_buttons(easel):  # noqa: F811
    _, _, client = easel
    config = client.get("/config").json()
    by_elem = {c["props"]["elem_id"]: c["props"] for c in config["components"] if c.get("props", {}).get("elem_id")}
    choices = [c[0] for c in by_elem["img2img_script_list"]["choices"]]
    # built-in scripts (modules/builtin_scripts) come before the extensions' ones
    assert choices[0] == "None" and choices[-1] == "Seed Copies" and "Outpainting mk2" in choices
    assert by_elem["img2img_prompt_rewriter_accordion"]["label"] == "Prompt Rewriter"
    for elem_id in ("txt2img_hr", "txt2img_hr_upscaler", "txt2img_hires_steps", "txt2img_denoising_strength",
                    "txt2img_hr_scale", "txt2img_hr_resize_x", "txt2img_hr_resize_y", "hr_sampler", "hires_prompt",
                    "hires_neg_prompt", "txt2img_subseed", "txt2img_subseed_strength", "txt2img_paste",
                    "img2img_paste", "pnginfo_send_to_txt2img", "pnginfo_send_to_img2img",
                    "pnginfo_send_to_inpaint"):
        assert elem_id in by_elem, elem_id
    assert by_elem["txt2img_hr"]["label"] == "Hires. fix"


def test_img2img_generate_button_passes_the_script_arguments(easel):  # noqa: F811
    """The page's handler: 30 fixed values, then the flat script args (Seed Copies chosen, 2 copies)."""
    from modules import scripts
    from modules.ui import img2img

    runner = scripts.scripts_img2img
    args = runner.default_args()
    copies = runner.find("seed copies", alwayson=False)
    args[0] = runner.selectable_scripts.index(copies) + 1
    args[copies.args_from] = 2
    picture = Image.fromarray(np.random.default_rng(2).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    fixed = ["img2img", picture, None, None, None, "a boat", "", "Euler", "Automatic", 2, 7.0, 64, 64, 1, 1, 5,
             0.5, 0, 4, 0, 1, 0, 32,
             None, None, 0, "", "", "",          # Sketch, Inpaint sketch + mask transparency, Batch folders
             []]
    assert len(fixed) == img2img.IMG2IMG_PARAMS
    *_, (_, _, gallery, info, texts, _) = list(img2img.generate_with_scripts(None, *fixed, *args))
    assert len(texts) == 3 and all("Copies: 2" in t for t in texts), info   # the batch grid first, as in A1111
    assert "Seed: 5," in texts[1] and "Seed: 6," in texts[2]
