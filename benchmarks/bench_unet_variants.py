"""One full-size SD1.5 U-Net step (512x512, CFG batch 2, random weights) in one variant per process.

    venv/bin/python -m benchmarks.bench_unet_variants bf16            # plain, as diffusers runs it
    venv/bin/python -m benchmarks.bench_unet_variants bf16_cl         # channels-last memory format
    venv/bin/python -m benchmarks.bench_unet_variants bf16_compile    # torch.compile (Inductor)
    venv/bin/python -m benchmarks.bench_unet_variants bf16_freeze     # torch.compile with weight freezing
    venv/bin/python -m benchmarks.bench_unet_variants bf16_malloc     # plain, glibc malloc keeping freed memory
    (suffixes combine: bf16_freeze_malloc)
    (fp32_... the same in fp32)

One process per variant so that compiled code and allocator state do not
leak between rows. Prints the first-call time (compile included) and three
timed steps, and saves the output so variants can be compared with
`--compare A B`.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

OUT = Path(tempfile.gettempdir()) / "easel-unet-variants"


def run(variant: str) -> None:
    from diffusers import UNet2DConditionModel
    from diffusers.models.attention_processor import AttnProcessor2_0

    from benchmarks.bench_sd15_unet import SD15_UNET

    if "_malloc" in variant:   # glibc keeps freed activations mapped (modules/malloc_tuning.py)
        from modules import malloc_tuning

        malloc_tuning.keep_freed_memory()
    dtype = torch.bfloat16 if "bf16" in variant else torch.float32
    torch.manual_seed(0)
    unet = UNet2DConditionModel(**SD15_UNET).eval().requires_grad_(False)
    unet.set_attn_processor(AttnProcessor2_0())
    unet = unet.to(dtype)
    x = torch.randn(2, 4, 64, 64, dtype=dtype)
    cond = torch.randn(2, 77, 768, dtype=dtype)
    t = torch.tensor(500)
    if "_cl" in variant:
        unet = unet.to(memory_format=torch.channels_last)
        x = x.to(memory_format=torch.channels_last)
    call = unet
    if "compile" in variant or "freeze" in variant:
        import torch._inductor.config as inductor_config

        inductor_config.freezing = "freeze" in variant   # folds weights into the graph: later weight edits are ignored
        call = torch.compile(unet)
    with torch.inference_mode():
        started = time.perf_counter()
        out = call(x, t, encoder_hidden_states=cond).sample
        print(f"{variant}: first call {time.perf_counter() - started:.1f} s", flush=True)
        times = []
        for _ in range(3):
            started = time.perf_counter()
            out = call(x, t, encoder_hidden_states=cond).sample
            times.append(time.perf_counter() - started)
    print(f"{variant}: s/step {', '.join(f'{s:.2f}' for s in times)} (median {sorted(times)[1]:.2f})")
    OUT.mkdir(exist_ok=True)
    torch.save(out.float(), OUT / f"{variant}.pt")


def compare(a: str, b: str) -> None:
    x, y = torch.load(OUT / f"{a}.pt"), torch.load(OUT / f"{b}.pt")
    diff = (x - y).abs()
    print(f"{a} vs {b}: max |diff| {diff.max().item():.4f}, mean {diff.mean().item():.5f} "
          f"(mean |output| {y.abs().mean().item():.4f})")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("variant", nargs="?", default="bf16")
    parser.add_argument("--compare", nargs=2, metavar=("A", "B"))
    args = parser.parse_args()
    if args.compare:
        compare(*args.compare)
    else:
        run(args.variant)


if __name__ == "__main__":
    main()
