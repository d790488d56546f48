"""benchmarks/bench_gpu.py in its CPU smoke mode, so the GPU benchmark stays runnable between GPU sessions."""
from __future__ import annotations

import math

import torch


def test_gpu_benchmark_smoke_mode_measures_every_row():
    from benchmarks import bench_gpu

    results = bench_gpu.run(torch.device("cpu"), smoke=True, steps=2)
    rows = [(r["model"], r["attention"], r["offload"]) for r in results]
    assert rows == [("sd1", "sdpa", "none"), ("sd1", "sdpa", "model"), ("sd1", "sdpa", "blocks"),
                    ("sdxl", "sdpa", "none")]
    for r in results:
        assert r["it_per_s"] > 0 and math.isfinite(r["it_per_s"]) and r["image_s"] > 0
