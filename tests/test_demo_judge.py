"""The demo dataset and the rule-based judge, checked against ground truth.

The judge decides whether the demo model "understood" a prompt, so it must be
right on images whose answer is known: clean renders, and renders blurred and
noised the way generated images are.
"""
import numpy as np
import pytest
from PIL import Image

from training import judge
from training.evaluate import build_prompts, judge_accuracy_on_ground_truth
from training.shapes_dataset import (COLOURS, HELD_OUT_PAIRS, POSITIONS, SHAPES, ShapeObject,
                                     ShapesDataset, _background_array, parse_prompt_meta, render)


def _render(colour, shape, size="large", position="center", background="white"):
    obj = ShapeObject(colour, shape, size, POSITIONS[position], position)
    return render([obj], _background_array("plain", (background,), np.random.default_rng(0)))


def test_dataset_is_deterministic_per_seed_and_index():
    a, b, c = ShapesDataset(seed=3).sample(17), ShapesDataset(seed=3).sample(17), ShapesDataset(seed=4).sample(17)
    assert a.caption == b.caption and a.image.tobytes() == b.image.tobytes()
    assert (a.caption, a.image.tobytes()) != (c.caption, c.image.tobytes())


def test_training_stream_never_draws_held_out_pairs():
    ds = ShapesDataset(seed=0)
    seen = {(o.colour, o.shape) for i in range(600) for o in ds.sample(i).objects}
    assert not seen & HELD_OUT_PAIRS
    assert len(seen) >= 40  # the other pairs do appear


def test_captions_name_what_is_drawn():
    ds = ShapesDataset(seed=1)
    for i in range(200):
        s = ds.sample(i)
        meta = parse_prompt_meta(s.caption)
        assert meta["colours"] == [o.colour for o in s.objects], s.caption
        assert meta["shapes"] == [o.shape for o in s.objects], s.caption
        if "position" in s.mentions:
            assert meta["position"] == s.objects[0].position, s.caption
        if "background" in s.mentions and s.background not in ("striped", "gradient"):
            assert meta["background"] == s.background, s.caption


def test_parse_prompt_meta_reads_the_templates():
    assert parse_prompt_meta("a large red star in the top left") == {
        "colours": ["red"], "shapes": ["star"], "position": "top left", "size": "large", "background": None}
    meta = parse_prompt_meta("a blue ring on a yellow background")
    assert meta["colours"] == ["blue"] and meta["background"] == "yellow"
    assert parse_prompt_meta("bottom right: a pink cross")["position"] == "bottom right"
    assert parse_prompt_meta("a cyan circle and a white square")["shapes"] == ["circle", "square"]


@pytest.mark.parametrize("shape", SHAPES)
def test_judge_reads_each_shape(shape):
    reading = judge.read_image(_render("red", shape, background="white"))
    assert reading.main.shape == shape, reading.main.features
    assert reading.main.colour == "red"
    assert reading.background == "white"


@pytest.mark.parametrize("position", list(POSITIONS))
def test_judge_reads_each_position(position):
    reading = judge.read_image(_render("blue", "square", size="small", position=position, background="yellow"))
    assert reading.main.position == position
    assert reading.main.size == "small"


@pytest.mark.parametrize("colour", list(COLOURS))
def test_judge_reads_each_colour(colour):
    background = "black" if colour not in ("black", "blue", "purple") else "white"
    assert judge.read_image(_render(colour, "circle", background=background)).main.colour == colour


def test_judge_scores_prompts_including_two_objects():
    image = _render("green", "triangle", position="left", background="gray")
    assert judge.judge(image, parse_prompt_meta("a green triangle in the left on a gray background")) == {
        "colour": True, "shape": True, "position": True, "background": True}
    assert judge.judge(image, parse_prompt_meta("a red circle in the right"))["colour"] is False
    ds = ShapesDataset(seed=5)
    two = next(s for s in (ds.sample(i) for i in range(200)) if len(s.objects) == 2 and s.background in COLOURS)
    assert judge.judge(two.image, parse_prompt_meta(two.caption)) == {
        "colour": True, "shape": True, **({"background": True} if "background" in two.mentions else {})}


def test_judge_accuracy_on_clean_ground_truth():
    scores = judge_accuracy_on_ground_truth(count=150, degrade=False)
    for attr, (correct, total) in scores.items():
        assert correct / total >= 0.98, (attr, correct, total)


def test_judge_accuracy_on_blurred_noisy_ground_truth():
    scores = judge_accuracy_on_ground_truth(count=150, degrade=True)
    assert scores["shape"][0] / scores["shape"][1] >= 0.9, scores["shape"]
    for attr in ("colour", "position", "background", "size"):
        correct, total = scores[attr]
        assert correct / total >= 0.97, (attr, correct, total)


def test_judge_accuracy_on_two_object_ground_truth():
    # two-object prompts are the model's weak point, so the judge must be shown right on them
    clean = judge_accuracy_on_ground_truth(count=100, degrade=False, objects=2)
    degraded = judge_accuracy_on_ground_truth(count=100, degrade=True, objects=2)
    assert set(clean) == {"colour", "shape"}
    for scores, shape_floor in ((clean, 0.95), (degraded, 0.9)):
        assert scores["colour"][0] / scores["colour"][1] >= 0.95, scores
        assert scores["shape"][0] / scores["shape"][1] >= shape_floor, scores
    with pytest.raises(ValueError, match="objects"):
        judge_accuracy_on_ground_truth(count=1, objects=3)   # no such images: an error, not an endless search


def test_colour_measures_move_with_the_colour():
    red, blue = _render("red", "circle"), _render("blue", "circle")
    assert judge.redness(red) > judge.redness(blue) + 100
    assert judge.blueness(blue) > judge.blueness(red) + 100


def test_evaluation_set_is_large_and_includes_held_out_pairs():
    prompts = build_prompts()
    assert len(prompts) >= 100
    held = [p for p in prompts if p["held_out"]]
    assert {tuple(parse_prompt_meta(p["prompt"])["colours"][:1] + parse_prompt_meta(p["prompt"])["shapes"][:1])
            for p in held} == set(HELD_OUT_PAIRS)
    categories = {p["category"] for p in prompts}
    assert {"a {colour} {shape}", "on a {colour} background", "size + position", "two objects",
            "word order"} <= categories
    assert all(isinstance(judge.judge(Image.new("RGB", (64, 64)), parse_prompt_meta(p["prompt"])), dict)
               for p in prompts[:5])
