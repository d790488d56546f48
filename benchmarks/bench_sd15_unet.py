"""Per-step time of a full-size SD1.5 U-Net (random weights) at 512x512 with CFG (batch 2).

Compared with this machine's matmul peak measured in the same run: one CFG
step of SD1.5 at 512 is about 1.6 TFLOP (measured here with torch's FLOP
counter), so the peak gives a floor for the step time.
"""
from __future__ import annotations

import argparse
import json

import torch

from benchmarks.timing import median_seconds, print_table

SD15_UNET = dict(sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
                 block_out_channels=(320, 640, 1280, 1280), cross_attention_dim=768, attention_head_dim=8,
                 down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
                 up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3)


def matmul_peak_tflops(dtype: torch.dtype, n: int = 2048) -> float:
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    seconds = median_seconds(lambda: a @ b, repeats=5)
    return 2 * n ** 3 / seconds / 1e12


def step_flops(unet, latents, t, cond) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter, torch.inference_mode():
        unet(latents, t, encoder_hidden_states=cond)
    return counter.get_total_flops()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    from diffusers import UNet2DConditionModel
    from diffusers.models.attention_processor import AttnProcessor2_0

    torch.manual_seed(0)
    unet = UNet2DConditionModel(**SD15_UNET).eval()
    unet.set_attn_processor(AttnProcessor2_0())
    latents = torch.randn(2, 4, 64, 64)
    cond = torch.randn(2, 77, 768)
    t = torch.tensor(500)
    flops = step_flops(unet, latents, t, cond)
    rows, results = [], {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        model = unet.to(dtype)
        peak = matmul_peak_tflops(dtype)

        def step():
            with torch.inference_mode():
                model(latents.to(dtype), t, encoder_hidden_states=cond.to(dtype))

        seconds = median_seconds(step, repeats=args.steps)
        floor = flops / (peak * 1e12)
        rows.append([name, f"{seconds:.2f}", f"{peak:.2f}", f"{floor:.2f}", f"{floor / seconds:.0%}"])
        results[name] = {"step_s": seconds, "matmul_peak_tflops": peak, "floor_s": floor}
    print_table(f"SD1.5 U-Net, 512x512, CFG batch 2 ({flops / 1e12:.2f} TFLOP per step, {torch.get_num_threads()} threads)",
                ["precision", "s/step", "matmul peak TFLOP/s", "floor s/step", "of peak"], rows)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"tflop_per_step": flops / 1e12, **results}, f, indent=1)


if __name__ == "__main__":
    main()
