"""Measure what the demo model understands, through Easel's own generation path.

    venv/bin/python -m training.evaluate [--model models/Stable-diffusion/easel-demo.safetensors]

Generates 112 prompts (caption templates, word-order variations and
colour-shape pairs held out of training) with Euler a, 20 steps, CFG 7 via
`modules.processing.process_images`, three images each (`--seeds`: one pass
of 112 images moved background accuracy between 61% and 87% with the seeds), judges
every image with training/judge.py and prints a table pooled over all
images and one row per seed; writes docs/demo-model-eval.md. It first measures the
judge itself on ground-truth renders, so its numbers can be read with that
accuracy in mind. `--quick` runs only the quick probe the training notes quote
(QUICK_PROBE: two-object prompts and one-object prompts, 52 s on 2 cores) and prints
its counts. Tests import `load_demo_model`, `generate` and the judge to
check that generation controls change images the way they should.
"""
from __future__ import annotations

import argparse
import os
import time
from collections import defaultdict
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import torch
from PIL import Image, ImageFilter

from training import judge
from training.shapes_dataset import (COLOURS, HELD_OUT_PAIRS, POSITIONS, SHAPES, ShapesDataset,
                                     _contrasting, parse_prompt_meta)

REPO = Path(__file__).resolve().parent.parent
# EASEL_DEMO_MODEL points the evaluator and tests/test_demo_model.py at another file (a candidate run).
DEMO_MODEL = Path(os.environ.get("EASEL_DEMO_MODEL") or REPO / "models" / "Stable-diffusion" / "easel-demo.safetensors")
REPORT = REPO / "docs" / "demo-model-eval.md"
SAMPLES_IMAGE = REPO / "docs" / "demo-model-samples.png"
GOALS = {"colour": 0.90, "shape": 0.75, "position": 0.75, "background": 0.90}


# ---------------------------------------------------------------- model + generation

def load_demo_model(path=DEMO_MODEL, dtype=torch.float32, device: str = "cpu"):
    """The shipped demo model, loaded by the same code as any third-party checkpoint."""
    from modules import sd_models

    return sd_models.load_model(str(path), device=torch.device(device), dtype=dtype)


def generate(model, prompts, seed: int = 1000, negative_prompt="", cfg_scale: float = 7.0, steps: int = 20,
             sampler_name: str = "Euler a", batch_size: int = 8, scheduler: str | None = None) -> list[Image.Image]:
    """Images for `prompts` (seeds seed, seed+1, ...) through process_images, nothing saved."""
    from modules.processing import StableDiffusionProcessingTxt2Img, process_images

    prompts = [prompts] if isinstance(prompts, str) else list(prompts)
    images = []
    for start in range(0, len(prompts), batch_size):
        chunk = prompts[start:start + batch_size]
        negatives = negative_prompt if isinstance(negative_prompt, str) else negative_prompt[start:start + batch_size]
        p = StableDiffusionProcessingTxt2Img(
            prompt=chunk, negative_prompt=[negatives] * len(chunk) if isinstance(negatives, str) else negatives,
            seed=seed + start, steps=steps, cfg_scale=cfg_scale, width=64, height=64, sampler_name=sampler_name,
            scheduler=scheduler, batch_size=len(chunk), n_iter=1, sd_model=model, do_not_save_samples=True, do_not_save_grid=True)
        images.extend(process_images(p).images)
    return images


# ---------------------------------------------------------------- prompts

def build_prompts() -> list[dict]:
    """The fixed evaluation set: each entry {prompt, category, held_out}."""
    rng = np.random.default_rng(2024)
    colours, shapes = list(COLOURS), list(SHAPES)
    positions = list(POSITIONS)
    plain_bgs = ["white", "black", "gray", "blue", "yellow", "red", "green", "purple"]
    seen_pairs = [(c, s) for c in colours for s in shapes if (c, s) not in HELD_OUT_PAIRS]
    out = []

    def add(prompt, category, pairs):
        out.append({"prompt": prompt, "category": category,
                    "held_out": any(p in HELD_OUT_PAIRS for p in pairs)})

    def pick_seen():
        return seen_pairs[int(rng.integers(len(seen_pairs)))]

    def pick_bg(colour):
        options = [b for b in plain_bgs if _contrasting(b, (colour,))]
        return options[int(rng.integers(len(options)))]

    for c, s in sorted(HELD_OUT_PAIRS):                      # 8 held-out, plain template
        add(f"a {c} {s}", "a {colour} {shape}", [(c, s)])
    for c, s in sorted(HELD_OUT_PAIRS):                      # 8 held-out, with background
        add(f"a {c} {s} on a {pick_bg(c)} background", "on a {colour} background", [(c, s)])
    for c, s in sorted(HELD_OUT_PAIRS):                      # 8 held-out, with position
        add(f"a large {c} {s} in the {positions[int(rng.integers(len(positions)))]}", "size + position", [(c, s)])
    for _ in range(20):
        c, s = pick_seen()
        add(f"a {c} {s}", "a {colour} {shape}", [(c, s)])
    for _ in range(20):
        c, s = pick_seen()
        add(f"a {c} {s} on a {pick_bg(c)} background", "on a {colour} background", [(c, s)])
    for i in range(27):
        c, s = pick_seen()
        size = "small" if i % 3 == 0 else "large"
        add(f"a {size} {c} {s} in the {positions[i % len(positions)]}", "size + position", [(c, s)])
    for _ in range(12):
        (c1, s1), (c2, s2) = pick_seen(), pick_seen()
        while c2 == c1:
            c2, s2 = pick_seen()
        add(f"a {c1} {s1} and a {c2} {s2}", "two objects", [(c1, s1), (c2, s2)])
    for i in range(9):                                       # free word order
        c, s = pick_seen()
        pos = positions[(i * 4) % len(positions)]
        variants = [f"{pos}: a {c} {s}", f"a {s}, {c}", f"a {c} {s} on a {pick_bg(c)} background in the {pos}"]
        add(variants[i % 3], "word order", [(c, s)])
    return out


# ---------------------------------------------------------------- judge self-check

def _degrade(image: Image.Image, rng) -> Image.Image:
    """Blur and noise a render the way generated images are soft and grainy."""
    image = image.filter(ImageFilter.GaussianBlur(0.8))
    noisy = np.asarray(image, np.float32) + rng.normal(0, 8, (64, 64, 3))
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))


def _one_object_checks(sample, image) -> dict:
    reading = judge.read_image(image)
    obj, main = sample.objects[0], reading.main
    checks = {"colour": main is not None and main.colour == obj.colour,
              "shape": main is not None and main.shape == obj.shape,
              "size": main is not None and main.size == obj.size,
              "background": reading.background == sample.background}
    if obj.position:
        checks["position"] = main is not None and main.position == obj.position
    return checks


def _two_object_checks(sample, image) -> dict:
    # the same set matching as a two-object prompt gets in judge.judge
    expected = {"colours": [o.colour for o in sample.objects], "shapes": [o.shape for o in sample.objects]}
    return judge.judge(image, expected)


_CHECKS_BY_OBJECT_COUNT = {1: _one_object_checks, 2: _two_object_checks}


def judge_accuracy_on_ground_truth(count: int = 300, seed: int = 123, degrade: bool = False,
                                   objects: int = 1) -> dict:
    """Judge accuracy on rendered dataset images with plain backgrounds and `objects` objects
    (1, or 2: colour and shape scored as sets, as for two-object prompts), optionally blurred
    and noisy like model output. Returns {attribute: (correct, total)}."""
    if objects not in _CHECKS_BY_OBJECT_COUNT:   # the dataset draws no other count: the loop would never end
        raise ValueError(f"objects must be one of {sorted(_CHECKS_BY_OBJECT_COUNT)}, not {objects}")
    checker = _CHECKS_BY_OBJECT_COUNT[objects]
    ds = ShapesDataset(seed=seed, include_held_out=True)
    rng = np.random.default_rng(seed)
    scores = defaultdict(lambda: [0, 0])
    index = 0
    while scores["shape"][1] < count:
        sample = ds.sample(index)
        index += 1
        if len(sample.objects) != objects or sample.background in ("striped", "gradient"):
            continue
        image = _degrade(sample.image, rng) if degrade else sample.image
        for key, ok in checker(sample, image).items():
            scores[key][0] += int(ok)
            scores[key][1] += 1
    return {k: tuple(v) for k, v in scores.items()}


def judge_self_checks(count: int = 300) -> dict:
    """{label: scores} of the judge on ground truth, one and two objects, clean and degraded."""
    return {f"{label}, {state}": judge_accuracy_on_ground_truth(count, degrade=degrade, objects=objects)
            for label, objects in (("one object", 1), ("two objects", 2))
            for state, degrade in (("clean", False), ("blurred (sigma 0.8) + noise (sd 8)", True))}


# ---------------------------------------------------------------- evaluation

def seed_bases(first: int, count: int) -> list[int]:
    """The seed of prompt i in pass k is first + 1000*k + i (112 prompts never overlap the next pass)."""
    return [first + 1000 * k for k in range(count)]


def evaluate(model, prompts: list[dict], seeds=(1000,), batch_size: int = 8, progress=True,
             scheduler: str | None = None) -> list[dict]:
    """One judged row per (seed base, prompt); prompt i is drawn with seed base + i."""
    rows = []
    texts = [p["prompt"] for p in prompts]
    total = len(texts) * len(seeds)
    started = time.time()
    for base in seeds:
        for start in range(0, len(texts), batch_size):
            images = generate(model, texts[start:start + batch_size], seed=base + start, batch_size=batch_size,
                              scheduler=scheduler)
            for index, (entry, image) in enumerate(zip(prompts[start:start + batch_size], images), start):
                result = judge.judge(image, parse_prompt_meta(entry["prompt"]))
                rows.append({**entry, "index": index, "seed": base, "image": image, "result": result})
            if progress:
                done = len(rows)
                eta = (time.time() - started) / done * (total - done)
                print(f"evaluated {done}/{total} images, ETA {eta:.0f}s", flush=True)
    return rows


def summarize(rows: list[dict]) -> dict:
    """{(group, attribute): (correct, total)} for groups all / seen / held-out / each category,
    pooled over every seed."""
    table = defaultdict(lambda: [0, 0])
    for row in rows:
        groups = ["all", "held-out pairs" if row["held_out"] else "seen pairs", row["category"]]
        for attr, ok in row["result"].items():
            for g in groups:
                table[(g, attr)][0] += int(ok)
                table[(g, attr)][1] += 1
    return {k: tuple(v) for k, v in table.items()}


# ---------------------------------------------------------------- quick probe

# The probe docs/demo-model.md quotes for runs demo19-demo21: the two groups where models differ
# most, each group drawn as one batch with prompt i of the group at seed base + i (so not the
# evaluator's seeds: prompt i of the whole set there), in under a minute instead of the full pass.
QUICK_PROBE = (("two objects", (1000, 2000, 3000)), ("a {colour} {shape}", (1000,)))


def quick_probe(model, generate_fn=None) -> dict:
    """{category: {"colour": (right, images), "shape": (right, images)}} over QUICK_PROBE."""
    generate_fn = generate_fn or generate
    prompts = build_prompts()
    scores = {}
    for category, bases in QUICK_PROBE:
        texts = [p["prompt"] for p in prompts if p["category"] == category]
        right = {"colour": 0, "shape": 0}
        for base in bases:
            for text, image in zip(texts, generate_fn(model, texts, seed=base, batch_size=len(texts))):
                verdict = judge.judge(image, parse_prompt_meta(text))
                for attr in right:
                    right[attr] += int(verdict[attr])
        scores[category] = {attr: (count, len(texts) * len(bases)) for attr, count in right.items()}
    return scores


def format_quick_probe(scores: dict) -> str:
    return "; ".join(f"{category}: colour {s['colour'][0]}/{s['colour'][1]}, shape {s['shape'][0]}/{s['shape'][1]}"
                     for category, s in scores.items())


def _pct(pair) -> str:
    correct, total = pair
    return f"{100 * correct / total:.0f}% ({correct}/{total})" if total else "-"


def format_report(summary: dict, judge_checks: dict, rows: list[dict], seconds: float,
                  model_path, device: str = "cpu fp32") -> str:
    """The markdown report; judge_checks: {label: scores} from judge_self_checks."""
    attrs = ["colour", "shape", "position", "size", "background"]
    groups = ["all", "seen pairs", "held-out pairs"] + sorted({r["category"] for r in rows})
    seeds = sorted({r["seed"] for r in rows})
    prompts = sorted({r["index"] for r in rows})   # by position: the set holds one prompt text twice
    lines = ["# Demo model evaluation", "",
             f"Model: `{Path(model_path).name}`. {len(prompts)} prompts, {len(seeds)} image(s) each "
             f"({len(rows)} images: prompt i drawn with seed B+i for B in {', '.join(map(str, seeds))}), "
             f"generated through `modules.processing.process_images` (Euler a, 20 steps, CFG 7, 64x64, {device}), "
             f"judged by `training/judge.py`. Wall time {seconds:.0f} s on this machine's shared CPUs. "
             "Regenerate with `venv/bin/python -m training.evaluate`.", "",
             "## Results (all images)", "",
             "| group | " + " | ".join(attrs) + " |", "|---" * (len(attrs) + 1) + "|"]
    for g in groups:
        lines.append(f"| {g} | " + " | ".join(_pct(summary.get((g, a), (0, 0))) for a in attrs) + " |")
    lines += ["", "Goals: " + ", ".join(f"{a} >= {int(v * 100)}%" for a, v in GOALS.items()) + ".", ""]
    for attr, goal in GOALS.items():
        c, t = summary.get(("all", attr), (0, 0))
        if t:
            lines.append(f"- {attr}: {100 * c / t:.1f}% ({c}/{t}) — {'meets' if c / t >= goal else 'BELOW'} the goal")
    if len(seeds) > 1:
        lines += ["", "## Each seed alone (how much one pass of the prompts owes to the noise)", "",
                  "| seeds | " + " | ".join(attrs) + " |", "|---" * (len(attrs) + 1) + "|"]
        for base in seeds:
            alone = summarize([r for r in rows if r["seed"] == base])
            lines.append(f"| {base}+i | " + " | ".join(_pct(alone.get(("all", a), (0, 0))) for a in attrs) + " |")
    lines += ["", "## The judge's own accuracy (ground-truth renders, plain backgrounds)", "",
              "Two objects are scored as two-object prompts are: both colours, and each colour's shape.", "",
              "| renders | " + " | ".join(attrs) + " |", "|---" * (len(attrs) + 1) + "|"]
    lines += [f"| {label} | " + " | ".join(_pct(scores.get(a, (0, 0))) for a in attrs) + " |"
              for label, scores in judge_checks.items()]
    lines += ["", "## Every prompt (right / images)", "", "| prompt | held out | judged |", "|---|---|---|"]
    for index in prompts:
        mine = [r for r in rows if r["index"] == index]
        verdict = ", ".join(f"{attr} {sum(r['result'][attr] for r in mine)}/{len(mine)}" for attr in mine[0]["result"])
        lines.append(f"| {mine[0]['prompt']} | {'yes' if mine[0]['held_out'] else ''} | {verdict} |")
    return "\n".join(lines) + "\n"


def contact_sheet(rows: list[dict], columns: int = 16, scale: int = 1, limit: int = 32) -> Image.Image:
    """The first `limit` images in prompt order (kept small: it is committed under docs/)."""
    rows = rows[:limit]
    n = len(rows)
    rows_count = (n + columns - 1) // columns
    sheet = Image.new("RGB", (columns * 64 * scale, rows_count * 64 * scale), (255, 255, 255))
    for i, r in enumerate(rows):
        tile = r["image"].resize((64 * scale, 64 * scale), Image.NEAREST)
        sheet.paste(tile, ((i % columns) * 64 * scale, (i // columns) * 64 * scale))
    return sheet


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=str(DEMO_MODEL))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--limit", type=int, default=0, help="evaluate only the first N prompts (quick look)")
    ap.add_argument("--report", default=str(REPORT), help="markdown output ('' to skip)")
    ap.add_argument("--precision", choices=("fp32", "bf16", "fp16"), default="fp32",
                    help="the model's dtype, as the precision setting chooses it (fp16: what Easel uses on CUDA)")
    ap.add_argument("--device", default="cpu", help="cpu, or cuda to check adherence on a GPU")
    ap.add_argument("--schedule", default=None, help="schedule type for Euler a (default: Automatic)")
    ap.add_argument("--seed", type=int, default=1000, help="prompt i of the first pass is drawn with seed SEED+i")
    ap.add_argument("--quick", action="store_true",
                    help="only the quick probe (12 two-object prompts x 3 seeds, 28 'a {colour} {shape}' x 1): "
                         "print its counts, write no report")
    ap.add_argument("--seeds", type=int, default=3,
                    help="passes over the prompts, pass k with seeds SEED+1000k+i: one pass of 112 images moved "
                         "by up to 26 points between seeds (background, 31 prompts), so the report pools them")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
    model = load_demo_model(args.model, dtypes[args.precision], args.device)
    if args.quick:
        scores = quick_probe(model)
        print(f"{args.model}: {format_quick_probe(scores)}")
        return scores
    prompts = build_prompts()
    if args.limit:
        prompts = prompts[:args.limit]
    judge_checks = judge_self_checks()
    started = time.time()
    rows = evaluate(model, prompts, seeds=seed_bases(args.seed, args.seeds), scheduler=args.schedule)
    seconds = time.time() - started
    summary = summarize(rows)
    report = format_report(summary, judge_checks, rows, seconds, args.model,
                           f"{args.device} {args.precision}" + (f", schedule {args.schedule}" if args.schedule else ""))
    print(report.split("## Every prompt")[0])
    if args.report:
        Path(args.report).write_text(report)
        contact_sheet(rows).save(SAMPLES_IMAGE if args.report == str(REPORT) else Path(args.report).with_suffix(".png"))
        print(f"wrote {args.report}")
    return summary


if __name__ == "__main__":
    main()
