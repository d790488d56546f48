"""Does switching checkpoints leak memory? Resident set after each of N switches between two checkpoints.

Two random SD1-layout checkpoints are written to a temporary folder and
loaded alternately with `ModelManager.load_now` (what the checkpoint
dropdown and the API run on the worker). After each load, gc runs and the
process's resident set (VmRSS) is printed. Growth is the last value against
the value after switch 2 (both checkpoints have been loaded once by then, so
allocator pools and caches are warm); goal: at most 5%.

--size tiny: the test factory's models (a few MB; mostly the 49,408-token
embedding). --size small: SD1's block layout at a quarter of its width,
55M parameters, 220 MB fp32 per checkpoint, so a leaked model shows. The
checkpoints are written by a child process, so the memory used to build them
is not already in this process's heap for the loads to reuse.
"""
from __future__ import annotations

import argparse
import gc
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.timing import print_table

GOAL_PERCENT = 5.0
ROOT = Path(__file__).resolve().parent.parent


def rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("/proc/self/status has no VmRSS")


def small_sd1_components(seed: int) -> dict:
    """SD1.5's layout (4 levels, 2 layers each, attention in the first 3) at a quarter of its width."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from tests.factories import tiny_text_encoder

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
                                block_out_channels=(64, 128, 256, 256), cross_attention_dim=256, attention_head_dim=8,
                                down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
                                up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3).eval()
    vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(32, 64, 128, 128),
                        layers_per_block=2, norm_num_groups=32, sample_size=512,
                        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4).eval()
    return dict(unet=unet, vae=vae, text_encoder=tiny_text_encoder(256, layers=4))


def write_checkpoints(folder: Path, size: str) -> None:
    from modules.checkpoint_export import export_original_checkpoint
    from tests.factories import make_tiny_checkpoint

    folder.mkdir(parents=True, exist_ok=True)
    for name, seed in (("alpha", 1), ("beta", 2)):
        if size == "tiny":
            make_tiny_checkpoint(folder, "sd1", name=name, seed=seed)
        else:
            parts = small_sd1_components(seed)
            export_original_checkpoint(parts["unet"], parts["vae"], parts["text_encoder"], folder / f"{name}.safetensors")
            del parts
            gc.collect()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", choices=["tiny", "small"], default="small")
    parser.add_argument("--switches", type=int, default=10)
    parser.add_argument("--write-to", help=argparse.SUPPRESS)    # child process: only write the checkpoints
    parser.add_argument("--default-malloc", action="store_true",
                        help="leave glibc malloc as it is (Easel's app keeps freed memory: modules/malloc_tuning.py)")
    args = parser.parse_args()
    if args.write_to:
        write_checkpoints(Path(args.write_to), args.size)
        return
    from modules import cmd_args, devices, malloc_tuning, model_manager, options, paths as paths_module

    if not args.default_malloc:
        malloc_tuning.keep_freed_memory(large_blocks_too=True)   # as app.py does
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="easel-leak-") as tmp:
        root = Path(tmp)
        subprocess.run([sys.executable, "-m", "benchmarks.bench_switch_leak", "--size", args.size,
                        "--write-to", str(root / "models" / "Stable-diffusion")], check=True, cwd=ROOT)
        paths = paths_module.Paths(repo=root, data_dir=root, models_dir=root / "models")
        choice = devices.choose(cmd_args.parse_args(["--use-cpu", "all"], environ={}), "fp32")
        manager = model_manager.ModelManager(None, paths, options.Options(), lambda: choice)
        infos = [manager.find("alpha"), manager.find("beta")]
        rows, values = [], []
        start_rss = rss_mib()
        for switch in range(1, args.switches + 1):
            started = time.perf_counter()
            model = manager.load_now(infos[switch % 2])
            params = sum(p.numel() for part in (model.unet, model.vae, *model.text_encoders) for p in part.parameters())
            del model
            gc.collect()
            values.append(rss_mib())
            rows.append([switch, infos[switch % 2].name, f"{params / 1e6:.1f}M", f"{time.perf_counter() - started:.2f}",
                         f"{values[-1]:.0f}"])
        manager.unload_now()
    base = values[1] if len(values) > 1 else values[0]
    growth = (values[-1] - base) / base * 100
    allocator = "default glibc malloc" if args.default_malloc else "malloc keeping freed memory"
    print_table(f"Checkpoint switching via ModelManager.load_now ({args.size}, fp32, {allocator}, RSS before the first load "
                f"{start_rss:.0f} MiB)", ["switch", "checkpoint", "params", "load s", "RSS MiB"], rows)
    print(f"\nRSS growth from switch 2 to switch {args.switches}: {growth:+.1f}% "
          f"({values[-1] - base:+.0f} MiB); goal <= {GOAL_PERCENT:.0f}%: {'met' if growth <= GOAL_PERCENT else 'NOT met'}")


if __name__ == "__main__":
    main()
