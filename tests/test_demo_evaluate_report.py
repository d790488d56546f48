"""The evaluator's report pools several seeds per prompt and shows each seed's pass alone."""
from training.evaluate import build_prompts, format_report, seed_bases, summarize


def _row(index, prompt, seed, colour_ok, shape_ok, held_out=False):
    return {"prompt": prompt, "index": index, "category": "a {colour} {shape}", "held_out": held_out, "seed": seed,
            "image": None, "result": {"colour": colour_ok, "shape": shape_ok}}


def test_seed_bases_never_reuse_a_seed_across_passes_of_the_prompt_set():
    bases = seed_bases(1000, 3)
    assert bases == [1000, 2000, 3000]
    seeds = [base + i for base in bases for i in range(len(build_prompts()))]
    assert len(set(seeds)) == len(seeds)


def test_report_pools_every_image_and_lists_each_seed_and_prompt():
    rows = [_row(0, "a red circle", 1000, True, True), _row(1, "a blue star", 1000, True, False, held_out=True),
            _row(0, "a red circle", 2000, False, True), _row(1, "a blue star", 2000, True, False, held_out=True)]
    summary = summarize(rows)
    assert summary[("all", "colour")] == (3, 4) and summary[("all", "shape")] == (2, 4)
    assert summary[("held-out pairs", "shape")] == (0, 2)
    report = format_report(summary, {}, rows, 1.0, "model.safetensors")
    assert "2 prompts, 2 image(s) each (4 images" in report
    assert "| 1000+i | 100% (2/2) | 50% (1/2) |" in report and "| 2000+i | 50% (1/2) | 50% (1/2) |" in report
    assert "| a red circle |  | colour 1/2, shape 2/2 |" in report
    assert "| a blue star | yes | colour 2/2, shape 0/2 |" in report


def test_a_prompt_text_that_appears_twice_in_the_set_is_reported_twice():
    rows = [_row(0, "a red circle", 1000, True, True), _row(1, "a red circle", 1000, False, False)]
    report = format_report(summarize(rows), {}, rows, 1.0, "model.safetensors")
    assert "2 prompts, 1 image(s) each" in report
    assert "| a red circle |  | colour 1/1, shape 1/1 |" in report and "| a red circle |  | colour 0/1, shape 0/1 |" in report


def test_report_lists_each_judge_self_check():
    rows = [_row(0, "a red circle", 1000, True, True)]
    checks = {"one object, clean": {"colour": (10, 10), "shape": (9, 10)},
              "two objects, clean": {"colour": (99, 100), "shape": (98, 100)}}
    report = format_report(summarize(rows), checks, rows, 1.0, "model.safetensors")
    assert "| one object, clean | 100% (10/10) | 90% (9/10) | - | - | - |" in report
    assert "| two objects, clean | 99% (99/100) | 98% (98/100) | - | - | - |" in report


def _ground_truth_render(prompt):
    """The prompt drawn by the dataset's renderer: left/right objects on a plain background that
    stands out from their colours, as the dataset picks one."""
    import numpy as np

    from training.shapes_dataset import (BACKGROUND_COLOURS, POSITIONS, ShapeObject, _contrasting,
                                         parse_prompt_meta, render)

    meta = parse_prompt_meta(prompt)
    places = ["left", "right"] if len(meta["shapes"]) == 2 else ["center"]
    objects = [ShapeObject(c, s, "small" if len(places) == 2 else "large", POSITIONS[where], where)
               for c, s, where in zip(meta["colours"], meta["shapes"], places)]
    background = next(b for b in ("white", "black", "gray") if _contrasting(b, tuple(meta["colours"])))
    return render(objects, np.broadcast_to(np.array(BACKGROUND_COLOURS[background], np.float32), (64, 64, 3)).copy())


def test_quick_probe_draws_each_group_at_its_seeds_and_counts_the_judge_verdicts():
    from training.evaluate import QUICK_PROBE, format_quick_probe, quick_probe

    calls = []

    def fake_generate(model, prompts, seed, batch_size):
        calls.append((list(prompts), seed, batch_size))
        return [_ground_truth_render(p) for p in prompts]

    scores = quick_probe("model", generate_fn=fake_generate)
    prompts = build_prompts()
    two = [p["prompt"] for p in prompts if p["category"] == "two objects"]
    one = [p["prompt"] for p in prompts if p["category"] == "a {colour} {shape}"]
    assert (len(two), len(one)) == (12, 28)
    # each group is one batch, prompt i of the group at seed base + i, as the training notes quote it
    assert calls == [(two, 1000, 12), (two, 2000, 12), (two, 3000, 12), (one, 1000, 28)]
    assert [category for category, _ in QUICK_PROBE] == list(scores)
    # clean renders of what each prompt asks for: the judge finds (nearly) all of them right
    for category, images in (("two objects", 36), ("a {colour} {shape}", 28)):
        for attr in ("colour", "shape"):
            right, total = scores[category][attr]
            assert total == images and right >= images - 1, (category, attr, right)
    assert format_quick_probe({"two objects": {"colour": (18, 36), "shape": (3, 36)}}) == \
        "two objects: colour 18/36, shape 3/36"
