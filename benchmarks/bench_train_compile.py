"""The demo U-Net's training forward and backward, eager or with each block compiled, one mode per process.

    venv/bin/python -m benchmarks.bench_train_compile eager
    TORCHINDUCTOR_CACHE_DIR=/tmp/easel-inductor venv/bin/python -m benchmarks.bench_train_compile blocks

Run `blocks` twice with the same TORCHINDUCTOR_CACHE_DIR: the first process compiles into an
empty cache, and the second shows what a later training stage would pay with the cache warm.
It builds the U-Net with fresh weights from configs/easel-demo, as training/train_demo.py does,
at the training batch (32 images, latents from the VAE's encode of random pixels) with bf16
autocast where the CPU computes bf16. It prints one JSON row: the first step (compile included),
the median and minimum of the timed steps, and the absolute sum of the gradient that reaches the
text states. A whole compiled U-Net once returned exactly 0 there (docs/demo-model.md), so that
sum checks that the text encoder would still learn. Results: docs/demo-model.md, run demo28.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from benchmarks.timing import sample_seconds

MODES = ("eager", "blocks")


def build(batch: int, seed: int = 0):
    """(unet, latents, timesteps, text states) at the demo model's training shapes."""
    from training import train_demo

    unet, vae, text_encoder = train_demo.build_models(seed)
    unet.train()
    gen = torch.Generator().manual_seed(seed)
    pixels = torch.rand(batch, 3, 64, 64, generator=gen) * 2 - 1
    with torch.no_grad():
        latents = vae.encode(pixels).latent_dist.mean
    states = torch.randn(batch, 77, text_encoder.config.hidden_size, generator=gen, requires_grad=True)
    timesteps = torch.randint(0, 1000, (batch,), generator=gen)
    return unet, latents, timesteps, states


def compile_blocks(unet) -> None:
    """Compile each down, mid and up block on its own, in place (state-dict keys unchanged)."""
    for block in (*unet.down_blocks, unet.mid_block, *unet.up_blocks):
        block.compile()


def training_pass(unet, latents, timesteps, states, bf16: bool) -> tuple[float, float]:
    """One forward and backward; (loss, absolute sum of the text states' gradient)."""
    unet.zero_grad(set_to_none=True)
    states.grad = None
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        out = unet(latents, timesteps, encoder_hidden_states=states).sample.float()
    loss = out.pow(2).mean()
    loss.backward()
    return loss.item(), states.grad.abs().sum().item()


def measure(mode: str, batch: int, steps: int, bf16: bool) -> dict:
    unet, latents, timesteps, states = build(batch)
    if mode == "blocks":
        compile_blocks(unet)
    started = time.perf_counter()
    loss, grad_sum = training_pass(unet, latents, timesteps, states, bf16)
    first = time.perf_counter() - started
    times = sample_seconds(lambda: training_pass(unet, latents, timesteps, states, bf16), steps)
    return {"mode": mode, "batch": batch, "bf16": bf16, "first_step_s": round(first, 2),
            "median_step_s": round(statistics.median(times), 3), "min_step_s": round(min(times), 3),
            "loss": loss, "text_state_grad_abs_sum": grad_sum}


def main(argv=None) -> dict:
    from training.train_demo import training_precision

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", choices=MODES)
    p.add_argument("--batch", type=int, default=32, help="images per step (the recipe's: 32)")
    p.add_argument("--steps", type=int, default=8, help="timed steps after the first")
    p.add_argument("--precision", choices=("auto", "bf16", "fp32"), default="auto")
    args = p.parse_args(argv)
    choice = training_precision(args.precision, torch.device("cpu"))
    row = measure(args.mode, args.batch, args.steps, bf16=choice == "bf16")
    print(json.dumps(row), flush=True)
    return row


if __name__ == "__main__":
    main()
