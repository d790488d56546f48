"""benchmarks/bench_train_compile.py: the eager row runs and the text states get a gradient.

The compiled row takes minutes to compile, so only its setup is checked here."""
from __future__ import annotations

import math


def test_eager_training_pass_is_timed_and_reaches_the_text_states():
    from benchmarks import bench_train_compile

    row = bench_train_compile.main(["eager", "--batch", "2", "--steps", "1", "--precision", "fp32"])
    assert row["mode"] == "eager" and row["batch"] == 2 and row["bf16"] is False
    assert row["first_step_s"] > 0 and row["median_step_s"] > 0 and math.isfinite(row["loss"])
    assert row["text_state_grad_abs_sum"] > 0


def test_compiling_the_blocks_keeps_the_state_dict_keys():
    """Checkpoints, the EMA and exports read the U-Net by its state-dict keys."""
    from benchmarks import bench_train_compile

    unet, *_ = bench_train_compile.build(batch=1)
    before = list(unet.state_dict())
    bench_train_compile.compile_blocks(unet)
    assert list(unet.state_dict()) == before
