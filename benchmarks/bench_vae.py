"""VAE decode of an SD1.5-size VAE (random weights): whole vs tiled, time, peak memory, seams.

Each case runs through `modules.previews.decode_latents` (the path generation
uses) with the vae_tiling choice "Off" (whole) or "On" (diffusers' tiles).
Peak memory is the process's peak resident set (VmHWM), reset before each
case through /proc/self/clear_refs, minus the resident set before the case:
what the decode itself added. A whole decode whose estimated peak (the
whole decode at one tile, 512 px, scaled by pixel count) is above
--max-untiled-gib is skipped and the estimate printed instead.

Seams: at a size above one tile (the VAE's sample_size, 512 for SD1.5),
max |tiled - whole| inside the blended bands at tile borders and elsewhere.
"""
from __future__ import annotations

import argparse
import copy
import json
import time
from types import SimpleNamespace

import torch

from benchmarks.timing import print_table

SD15_VAE_CONFIG = "configs/sd1/vae/config.json"
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def reset_peak_rss() -> None:
    """Set VmHWM back to the current resident set (Linux: clear_refs value 5)."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def seam_mask(vae, height: int, width: int) -> torch.Tensor:
    """True on the pixels diffusers' tiled_decode blends: the first blend_extent rows/columns of every tile but the first."""
    blend = int(vae.tile_sample_min_size * vae.tile_overlap_factor)
    stride = vae.tile_sample_min_size - blend      # tile k starts at pixel k * stride in the output
    mask = torch.zeros(height, width, dtype=torch.bool)
    for start in range(stride, max(height, width), stride):
        mask[start:start + blend, :] = True
        mask[:, start:start + blend] = True
    return mask


def seam_diffs(vae, whole: torch.Tensor, tiled: torch.Tensor) -> tuple[float, float]:
    """(max |tiled - whole| on the seam bands, max elsewhere)."""
    diff = (tiled.float() - whole.float()).abs().amax(dim=(0, 1))
    mask = seam_mask(vae, *diff.shape)
    seams = float(diff[mask].max()) if mask.any() else 0.0
    rest = float(diff[~mask].max()) if (~mask).any() else 0.0
    return seams, rest


def decode_case(model, latents, tiling: str):
    from modules import previews

    rss_before = status_kib("VmRSS")
    reset_peak_rss()
    started = time.perf_counter()
    out = previews.decode_latents(model, latents, tiling)
    seconds = time.perf_counter() - started
    peak_gib = (status_kib("VmHWM") - rss_before) / 2 ** 20
    return out, seconds, peak_gib


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 2048], help="image sizes in pixels (square)")
    parser.add_argument("--precisions", nargs="+", default=["bf16", "fp32"], choices=list(DTYPES))
    parser.add_argument("--seam-size", type=int, default=768,
                        help="size where whole and tiled are both decoded to compare seams (0: skip)")
    parser.add_argument("--max-untiled-gib", type=float, default=6.0,
                        help="skip whole decodes whose estimated peak is above this")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    from diffusers import AutoencoderKL

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    with open(SD15_VAE_CONFIG) as f:
        base = AutoencoderKL.from_config(json.load(f)).eval()
    factor = 2 ** (len(base.config.block_out_channels) - 1)
    rows, results = [], []
    for precision in args.precisions:
        model = SimpleNamespace(vae=copy.deepcopy(base).to(DTYPES[precision]), device=torch.device("cpu"),
                                vae_scaling_factor=base.config.scaling_factor)
        gib_per_pixel = None      # whole-decode peak per output pixel, from the smallest size measured
        # The one-tile size always runs first: its whole-decode peak is what larger sizes are estimated from.
        sizes = sorted(set(args.sizes + [base.tile_sample_min_size] + ([args.seam_size] if args.seam_size else [])))
        for size in sizes:
            latents = torch.randn(1, 4, size // factor, size // factor, generator=torch.Generator().manual_seed(size))
            whole = tiled = None
            estimate = gib_per_pixel * size * size if gib_per_pixel else None
            if estimate is not None and estimate > args.max_untiled_gib:
                rows.append([precision, size, "whole", "skipped", f"~{estimate:.1f} (estimated)", ""])
                results.append(dict(precision=precision, size=size, tiling="Off", skipped=True, est_peak_gib=estimate))
            else:
                whole, seconds, peak = decode_case(model, latents, "Off")
                gib_per_pixel = gib_per_pixel or peak / (size * size)
                rows.append([precision, size, "whole", f"{seconds:.1f}", f"{peak:.2f}", ""])
                results.append(dict(precision=precision, size=size, tiling="Off", seconds=seconds, peak_gib=peak))
            if size <= base.tile_sample_min_size:
                # One tile: diffusers decodes whole either way, so "tiled" would time the same thing again.
                rows.append([precision, size, "tiled", "= whole (one tile)", "", ""])
                continue
            tiled, seconds, peak = decode_case(model, latents, "On")
            seams = ""
            entry = dict(precision=precision, size=size, tiling="On", seconds=seconds, peak_gib=peak)
            if whole is not None:
                at_seams, elsewhere = seam_diffs(base, whole, tiled)
                seams = f"{at_seams:.3f} / {elsewhere:.3f}"
                entry.update(max_diff_seams=at_seams, max_diff_elsewhere=elsewhere)
            rows.append([precision, size, "tiled", f"{seconds:.1f}", f"{peak:.2f}", seams])
            results.append(entry)
    print_table(f"SD1.5-size VAE decode, random weights, batch 1, {torch.get_num_threads()} threads "
                f"(tile {base.tile_sample_min_size} px, overlap {base.tile_overlap_factor:.0%})",
                ["precision", "size px", "decode", "seconds", "peak GiB added", "max |tiled-whole| seams / elsewhere"],
                rows)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
