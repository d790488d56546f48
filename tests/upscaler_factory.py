"""Tiny random-weight ESRGAN upscalers for tests (no tests here).

The keys and shapes are those of the original ESRGAN / A1111 "old arch"
RRDBNet files (ESRGAN_4x.pth and the community 4x-* models):
model.0 first conv, model.1.sub.N.RDB{1,2,3}.conv{1..5}.0 dense blocks,
model.1.sub.<blocks> trunk conv, then one conv per 2x upsampling step
(model.3, model.6, ...), the HR conv and the last conv. Written here from
that layout (growth 32, as every ESRGAN file has), not from spandrel's own class, so the test checks spandrel's
detection of a real file layout.
"""
from __future__ import annotations

import math
from pathlib import Path

import torch


def esrgan_state_dict(scale: int = 2, filters: int = 8, growth: int = 32, blocks: int = 1, seed: int = 0) -> dict:
    generator = torch.Generator().manual_seed(seed)
    state = {}

    def conv(prefix: str, cin: int, cout: int) -> None:
        state[f"{prefix}.weight"] = torch.randn(cout, cin, 3, 3, generator=generator) * 0.05
        state[f"{prefix}.bias"] = torch.zeros(cout)

    conv("model.0", 3, filters)
    for block in range(blocks):
        for rdb in (1, 2, 3):
            for i in range(1, 6):
                conv(f"model.1.sub.{block}.RDB{rdb}.conv{i}.0", filters + (i - 1) * growth,
                     growth if i < 5 else filters)
    conv(f"model.1.sub.{blocks}", filters, filters)
    index = 3
    for _ in range(int(math.log2(scale))):      # upsample (no weights), conv, LeakyReLU
        conv(f"model.{index}", filters, filters)
        index += 3
    conv(f"model.{index - 1}", filters, filters)  # HR conv
    conv(f"model.{index + 1}", filters, 3)        # last conv
    return state


def save_esrgan(folder: Path, name: str, scale: int = 2, fmt: str = "pth", seed: int = 0) -> Path:
    """Write a tiny ESRGAN as NAME.pth or NAME.safetensors into `folder` (created)."""
    folder.mkdir(parents=True, exist_ok=True)
    state = esrgan_state_dict(scale=scale, seed=seed)
    path = folder / f"{name}.{fmt}"
    if fmt == "safetensors":
        from safetensors.torch import save_file

        save_file(state, str(path))
    else:
        torch.save(state, path)
    return path
