"""One full-size SD1.5 U-Net step (512x512, CFG batch 2, random weights) in one variant per process;
"vae_" variants time the SD1.5 VAE decode of one 512x512 image instead.

    venv/bin/python -m benchmarks.bench_unet_variants bf16            # plain, as diffusers runs it
    venv/bin/python -m benchmarks.bench_unet_variants bf16_cl         # channels-last memory format
    venv/bin/python -m benchmarks.bench_unet_variants bf16_compile    # torch.compile (Inductor)
    venv/bin/python -m benchmarks.bench_unet_variants bf16_freeze     # torch.compile with weight freezing
    venv/bin/python -m benchmarks.bench_unet_variants bf16_malloc     # plain, glibc malloc keeping freed memory
    venv/bin/python -m benchmarks.bench_unet_variants bf16_malloc_all # ... and blocks over 32 MiB from the heap too
    venv/bin/python -m benchmarks.bench_unet_variants fp32_bf32       # fp32 tensors, matmuls/convs on bf16 units
    venv/bin/python -m benchmarks.bench_unet_variants fp32_classic    # attention as baddbmm + softmax + bmm, not SDPA
    venv/bin/python -m benchmarks.bench_unet_variants fp32_sliced     # ... one batch-head slice at a time
    venv/bin/python -m benchmarks.bench_unet_variants vae_bf16        # SD1.5 VAE decode at 512 (any suffix above)
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


def _attention_processor(variant: str):
    """diffusers' own attention processors: SDPA (what diffusers picks), or its older explicit-matmul ones."""
    from diffusers.models import attention_processor as ap

    if "_classic" in variant:
        return ap.AttnProcessor()
    if "_sliced" in variant:
        return ap.SlicedAttnProcessor(slice_size=1)
    return ap.AttnProcessor2_0()


def _unet(dtype, variant: str = ""):
    """The SD1.5 U-Net and one CFG step's inputs (batch 2, 64x64 latent)."""
    from diffusers import UNet2DConditionModel

    from benchmarks.bench_sd15_unet import SD15_UNET

    unet = UNet2DConditionModel(**SD15_UNET).eval().requires_grad_(False)
    unet.set_attn_processor(_attention_processor(variant))
    cond = torch.randn(2, 77, 768, dtype=dtype)
    return unet.to(dtype), torch.randn(2, 4, 64, 64, dtype=dtype), \
        lambda net, x: net(x, torch.tensor(500), encoder_hidden_states=cond).sample


def _vae_decoder(dtype):
    """The SD1.5 VAE decoder and a 64x64 latent (one 512x512 image), as decode_latents calls it."""
    import json

    from diffusers import AutoencoderKL

    vae = AutoencoderKL.from_config(json.loads(Path("configs/sd1/vae/config.json").read_text()))
    vae = vae.eval().requires_grad_(False).to(dtype)
    return vae, torch.randn(1, 4, 64, 64, dtype=dtype), lambda net, x: net.decode(x).sample


def run(variant: str) -> None:
    if "_malloc" in variant:   # glibc keeps freed activations mapped (modules/malloc_tuning.py)
        from modules import malloc_tuning

        malloc_tuning.keep_freed_memory(large_blocks_too="_malloc_all" in variant)
    dtype = torch.bfloat16 if "bf16" in variant else torch.float32
    if "_bf32" in variant:   # oneDNN runs fp32 matmuls/convs on bf16 units (measured: no gain, benchmarks/README.md)
        torch.backends.mkldnn.matmul.fp32_precision = "bf16"
        torch.backends.mkldnn.conv.fp32_precision = "bf16"
    torch.manual_seed(0)
    net, x, forward = _vae_decoder(dtype) if variant.startswith("vae_") else _unet(dtype, variant)
    if "_cl" in variant:
        net = net.to(memory_format=torch.channels_last)
        x = x.to(memory_format=torch.channels_last)
    call = net
    if "compile" in variant or "freeze" in variant:
        import torch._inductor.config as inductor_config

        inductor_config.freezing = "freeze" in variant   # folds weights into the graph: later weight edits are ignored
        call = torch.compile(net)
    with torch.inference_mode():
        started = time.perf_counter()
        out = forward(call, x)
        print(f"{variant}: first call {time.perf_counter() - started:.1f} s", flush=True)
        times = []
        for _ in range(3):
            started = time.perf_counter()
            out = forward(call, x)
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
