"""benchmarks/bench_gpu.py in its CPU smoke mode, so the GPU benchmark stays runnable between GPU sessions."""
from __future__ import annotations

import math

import torch


def test_gpu_benchmark_smoke_mode_measures_every_row():
    from benchmarks import bench_gpu

    results = bench_gpu.run(torch.device("cpu"), smoke=True, steps=2, repeats=1)
    rows = [(r["model"], r["path"], r["offload"], r["previews"]) for r in results]
    assert rows == [("sd1", "diffusers", "none", "-"), ("sd1", "easel", "none", "Approx cheap"),
                    ("sd1", "easel", "none", "None"), ("sd1", "easel", "model", "Approx cheap"),
                    ("sd1", "easel", "blocks", "Approx cheap"),
                    ("sdxl", "diffusers", "none", "-"), ("sdxl", "easel", "none", "Approx cheap")]
    for r in results:
        assert r["it_per_s"] > 0 and math.isfinite(r["it_per_s"]) and r["image_s"] > 0


def test_compiled_rows_come_last_on_a_fresh_model():
    """A compile can take minutes: a GPU run cut short by its time limit must keep every eager row."""
    from benchmarks import bench_gpu

    passes = bench_gpu._passes(torch.device("cuda"), ["Inductor", "Inductor + CUDA graphs"])
    assert [family for family, _ in passes] == ["sd1", "sdxl", "sd1"]
    assert all(case["compile"] in ("Off", "-") for _, cases in passes[:2] for case in cases)
    assert [(case["compile"], case["previews"]) for case in passes[2][1]] == [
        ("Inductor", "Approx cheap"), ("Inductor", "None"),
        ("Inductor + CUDA graphs", "Approx cheap"), ("Inductor + CUDA graphs", "None")]
