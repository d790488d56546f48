"""Draw a training run's loss curves (losses.csv) as a PNG with PIL alone.

    venv/bin/python -m training.loss_plot training/runs/demo/losses.csv docs/demo-model-loss.png

Two panels: the VAE's reconstruction error (mean |error| in /255 units) and the
U-Net's noise-prediction MSE (unweighted), each with a running mean over the
noisy per-step values. Log-scaled y axes, since both fall by orders of magnitude.
"""
from __future__ import annotations

import csv
import math
import sys
from pathlib import Path

from PIL import Image, ImageDraw

W, H, PAD = 520, 300, 48


def read_losses(path) -> dict[str, list[tuple[int, float]]]:
    series: dict[str, list[tuple[int, float]]] = {"vae": [], "unet": []}
    ground_from = None
    with open(path, newline="") as f:
        for row in csv.reader(f):
            phase, step, _, measure = row[0], int(row[1]), row[2], float(row[3])
            if phase == "ground":   # the grounding phase (--grounding-steps) goes on after the U-Net's steps
                if ground_from is None:
                    ground_from = 1 + max((s for s, _ in series["unet"]), default=-1)
                phase, step = "unet", ground_from + step
            series[phase].append((step, measure))
    # a resumed run may repeat steps after its last checkpoint: keep the latest value
    return {k: sorted(dict(v).items()) for k, v in series.items()}


def _running_mean(values, window):
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def _panel(draw, x0, title, points, unit):
    draw.rectangle([x0, 0, x0 + W - 1, H - 1], fill="white")
    draw.text((x0 + PAD, 10), title, fill="black")
    if not points:
        draw.text((x0 + PAD, H // 2), "no data", fill="black")
        return
    steps = [p[0] for p in points]
    vals = [max(p[1], 1e-6) for p in points]
    smooth = _running_mean(vals, max(1, len(vals) // 40))
    lo, hi = math.log10(min(smooth) * 0.8), math.log10(max(vals))
    sx = lambda s: x0 + PAD + (s - steps[0]) / max(1, steps[-1] - steps[0]) * (W - 2 * PAD)
    sy = lambda v: H - PAD - (math.log10(v) - lo) / max(1e-9, hi - lo) * (H - 2 * PAD)
    draw.rectangle([x0 + PAD, PAD, x0 + W - PAD, H - PAD], outline="black")
    for decade in range(math.floor(lo), math.ceil(hi) + 1):
        for m in (1, 2, 5):
            v = m * 10 ** decade
            if lo <= math.log10(v) <= hi:
                y = sy(v)
                draw.line([x0 + PAD, y, x0 + W - PAD, y], fill=(225, 225, 225))
                draw.text((x0 + 4, y - 6), f"{v:g}", fill="black")
    draw.point([(sx(s), sy(v)) for s, v in zip(steps, vals)], fill=(170, 190, 230))
    draw.line([(sx(s), sy(v)) for s, v in zip(steps, smooth)], fill=(20, 60, 200), width=2)
    draw.text((x0 + PAD, H - PAD + 8), f"step {steps[0]}", fill="black")
    draw.text((x0 + W - PAD - 70, H - PAD + 8), f"step {steps[-1]}", fill="black")
    draw.text((x0 + PAD, H - 18), f"{unit}; final running mean {smooth[-1]:.4g}", fill="black")


def draw_loss_curve(csv_path, png_path) -> Path:
    series = read_losses(csv_path)
    image = Image.new("RGB", (2 * W, H), "white")
    draw = ImageDraw.Draw(image)
    _panel(draw, 0, "VAE reconstruction (training batches)", series["vae"], "mean |error| x255")
    _panel(draw, W, "U-Net + text encoder (noise prediction)", series["unet"], "MSE, unweighted")
    png_path = Path(png_path)
    png_path.parent.mkdir(parents=True, exist_ok=True)
    image.save(png_path)
    return png_path


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python -m training.loss_plot LOSSES.csv OUT.png")
    print(draw_loss_curve(sys.argv[1], sys.argv[2]))
