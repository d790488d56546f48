"""The shipped demo model, through Easel's own generation path: do the controls mean something?

Every image here is made by `modules.processing.process_images` (via
training.evaluate.generate) from models/Stable-diffusion/easel-demo.safetensors,
loaded by the same code as third-party checkpoints, and measured by the
rule-based judge (training/judge.py). Each comparison uses the same seeds on
both sides, so the only difference is the control under test.
"""
import io

import numpy as np
import pytest
import torch

from training import judge
from training.evaluate import DEMO_MODEL, build_prompts, generate, load_demo_model
from training.shapes_dataset import parse_prompt_meta

pytestmark = pytest.mark.skipif(
    not DEMO_MODEL.exists(),
    reason=f"demo model {DEMO_MODEL} is absent: train and export it with "
           "`venv/bin/python -m training.train_demo --seed 0 --out training/runs/demo`")

SEED = 4242
N = 4  # images per condition (consecutive seeds)


@pytest.fixture(scope="module")
def model():
    torch.set_num_threads(1)
    return load_demo_model()


def _mean(measure, images):
    return float(np.mean([measure(im) for im in images]))


def _png(image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def test_same_seed_reproduces_the_image_byte_for_byte(model):
    first = generate(model, "a yellow star on a blue background", seed=SEED)[0]
    again = generate(model, "a yellow star on a blue background", seed=SEED)[0]
    other = generate(model, "a yellow star on a blue background", seed=SEED + 1)[0]
    assert _png(first) == _png(again)
    assert np.asarray(first).tobytes() != np.asarray(other).tobytes()


def test_negative_prompt_red_lowers_the_red_of_a_red_circle(model):
    prompts = ["a red circle"] * N
    plain = _mean(judge.redness, generate(model, prompts, seed=SEED))
    negative = _mean(judge.redness, generate(model, prompts, seed=SEED, negative_prompt="red"))
    assert negative < plain - 10, (plain, negative)


def test_emphasis_moves_the_colour_the_right_way_and_weight_1_is_a_no_op(model):
    """(red:1.5) is redder than [red] where red competes with another colour word.

    "a red circle" alone is near the palette's red ceiling, so the test weighs
    red against blue in one prompt. Measured on the shipped model (demo21, 4
    images each): "a [red] blue circle" / "a red blue circle" / "(red:1.3)" /
    "(red:1.5)": -56.5 / -51.1 / +39.3 / +130.8 at seed 4242, and -62.4 / -72.2 /
    +114.7 / +210.2 at seed 5000 ([red] and plain swap there; the emphasis
    steps up in order both times). (demo16: -29.9 to +112.0 at seed 4242;
    demo8 moved less, -12.4 to +33.7.)
    """
    weak = _mean(judge.redness, generate(model, ["a [red] blue circle"] * N, seed=SEED))
    strong = _mean(judge.redness, generate(model, ["a (red:1.5) blue circle"] * N, seed=SEED))
    assert strong > weak + 25, (weak, strong)
    plain = generate(model, ["a red circle"] * 2, seed=SEED)
    weight_one = generate(model, ["a (red:1) circle"] * 2, seed=SEED)
    assert [_png(a) for a in plain] == [_png(b) for b in weight_one]


def test_prompt_editing_red_to_blue_ends_bluer_than_red(model):
    edited = _mean(judge.blueness, generate(model, ["a [red:blue:0.5] circle"] * N, seed=SEED))
    red = _mean(judge.blueness, generate(model, ["a red circle"] * N, seed=SEED))
    assert edited > red + 10, (edited, red)


def _adherence(model, prompts, cfg_scale):
    images = generate(model, prompts, seed=SEED, cfg_scale=cfg_scale)
    checks = [ok for im, p in zip(images, prompts) for ok in judge.judge(im, parse_prompt_meta(p)).values()]
    return sum(checks) / len(checks)


def test_cfg_7_follows_the_prompt_better_than_cfg_1(model):
    prompts = ["a red square on a white background", "a blue circle on a yellow background",
               "a green star on a black background", "a yellow triangle on a purple background",
               "a white ring on a red background", "a black cross on a cyan background",
               "a purple circle on a white background", "a orange square on a blue background"]
    assert _adherence(model, prompts, 7.0) > _adherence(model, prompts, 1.0)


def test_quality_floor_on_a_slice_of_the_evaluation_set(model):
    """A regression guard for later features: a fixed slice of training/evaluate's prompts."""
    prompts = [p["prompt"] for p in build_prompts()[::7]]
    images = generate(model, prompts, seed=1000)
    results = [judge.judge(im, parse_prompt_meta(p)) for im, p in zip(images, prompts)]
    colour = np.mean([r["colour"] for r in results if "colour" in r])
    assert colour >= 0.7, colour   # the shipped model scores 0.9375 (15/16) on this slice (92% on the whole set)
