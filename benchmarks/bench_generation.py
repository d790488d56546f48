"""Easel's generation path against a plain diffusers pipeline on the same model, plus
the cost of live previews, the launch-to-page time and launch to first image.

    venv/bin/python -m benchmarks.bench_generation [--ckpt models/Stable-diffusion/easel-demo.safetensors]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import torch

from benchmarks.timing import interleaved_medians, median_seconds, print_table
from tests.browser_helpers import free_port

ROOT = Path(__file__).resolve().parent.parent


def load(ckpt: str | None):
    from modules import sd_models

    if ckpt is None:
        demo = ROOT / "models" / "Stable-diffusion" / "easel-demo.safetensors"
        if demo.exists():
            ckpt = str(demo)
        else:
            from tests.factories import make_tiny_checkpoint

            ckpt = str(make_tiny_checkpoint(Path(tempfile.mkdtemp()), "sd1"))
    return sd_models.load_model(ckpt, torch.device("cpu"), torch.float32)


def preview_seconds(model, size: int, method: str) -> float:
    """The work one preview adds to a step, timed alone: the end-to-end difference of
    two ~1 s images is smaller than the machine's noise."""
    from modules import previews

    side = size // model.family.vae_scale_factor
    latent = torch.randn(model.family.latent_channels, side, side)

    def twenty():
        for _ in range(20):
            previews.make_preview(model, latent, method)
    return median_seconds(twenty, repeats=5) / 20


def easel_run(model, steps: int, size: int, preview_type: str, every: int):
    from modules import jobs, options, processing, shared

    opts = options.Options()
    opts.set("show_progress_type", preview_type if preview_type != "None" else "Approx cheap")
    opts.set("show_progress_every_n_steps", every)
    opts.set("live_previews_enable", preview_type != "None")
    queue = jobs.JobQueue()

    def run():
        shared.init(opts=opts, queue=queue)
        p = processing.StableDiffusionProcessingTxt2Img(sd_model=model, prompt="a red circle", negative_prompt="",
                                                         seed=1, steps=steps, width=size, height=size,
                                                         sampler_name="Euler", do_not_save_samples=True)
        shared.queue.run_now(lambda job: processing.process_images(p))
    return run


def diffusers_run(model, steps: int, size: int):
    from diffusers import EulerDiscreteScheduler, StableDiffusionPipeline

    pipe = StableDiffusionPipeline(vae=model.vae, text_encoder=model.text_encoders[0], tokenizer=model.tokenizers[0],
                                   unet=model.unet, scheduler=EulerDiscreteScheduler.from_config(model.scheduler_config),
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)

    def run():
        pipe("a red circle", num_inference_steps=steps, guidance_scale=7.0, height=size, width=size,
             generator=torch.Generator().manual_seed(1))
    return run


def _wait_for_page(port: int, started: float) -> float:
    while time.perf_counter() - started < 120:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1) as response:
                if response.status == 200:
                    return time.perf_counter() - started
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("page did not answer within 120 s")


def launch_seconds(steps: int, size: int) -> dict[str, float]:
    """Start app.py --api on a fresh data folder; time the page, then a first and a second
    txt2img through the HTTP API (the first waits for the background model load)."""
    port = free_port()
    data = tempfile.mkdtemp()
    env = dict(os.environ, COMMANDLINE_ARGS="")
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "app.py", "--api", "--port", str(port), "--data-dir", data],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    body = json.dumps({"prompt": "a red circle", "steps": steps, "seed": 1, "sampler_name": "Euler a",
                       "cfg_scale": 7, "width": size, "height": size}).encode()

    def txt2img() -> None:
        request = urllib.request.Request(f"http://127.0.0.1:{port}/sdapi/v1/txt2img", data=body,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=300) as response:
            if not json.loads(response.read()).get("images"):
                raise RuntimeError("txt2img answered without an image")

    try:
        times = {"page": _wait_for_page(port, started)}
        txt2img()
        times["first image"] = time.perf_counter() - started
        again = time.perf_counter()
        txt2img()
        times["next image (round trip)"] = time.perf_counter() - again
        return times
    finally:
        proc.terminate()
        proc.wait(10)


# The imports the launch pays for, in the order app.py pays them: the page needs gradio;
# the model loader then imports torch, then diffusers and transformers (modules/ml_imports.py).
_IMPORT_TIMER = """
import json, sys, time
sys.path.insert(0, ".")
marks = [time.perf_counter()]
import gradio
marks.append(time.perf_counter())
import torch
marks.append(time.perf_counter())
from modules import ml_imports
ml_imports.ensure()
marks.append(time.perf_counter())
print(json.dumps([b - a for a, b in zip(marks, marks[1:])]))
"""


def import_seconds() -> dict[str, float]:
    """Seconds of each import group in a fresh interpreter (one core: imports hold the GIL)."""
    out = subprocess.run([sys.executable, "-c", _IMPORT_TIMER], cwd=ROOT, capture_output=True, text=True, check=True)
    gradio_s, torch_s, ml_s = json.loads(out.stdout.strip().splitlines()[-1])
    return {"import gradio": gradio_s, "import torch": torch_s, "import diffusers + transformers": ml_s}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ckpt")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--size", type=int, default=0, help="image side; default the family's native size")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--repeats", type=int, default=7, help="timed rounds; each round runs every case once")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = load(args.ckpt)
    size = args.size or model.family.native_size
    runs = {
        "diffusers pipeline (baseline)": diffusers_run(model, args.steps, size),
        "Easel, previews off": easel_run(model, args.steps, size, "None", 1),
        "Easel, cheap preview every step": easel_run(model, args.steps, size, "Approx cheap", 1),
        "Easel, full VAE preview every 5 steps": easel_run(model, args.steps, size, "Full", 5),
    }
    times = interleaved_medians(runs, repeats=args.repeats)
    base = times["diffusers pipeline (baseline)"]
    off = times["Easel, previews off"]
    rows = [[name, f"{t:.3f}", f"{t / args.steps * 1000:.1f}", f"{t / base:.2f}x", f"{(t / off - 1):+.1%}"]
            for name, t in times.items()]
    print_table(f"{model.checkpoint.name} ({model.family.id}), {size}x{size}, {args.steps} steps, CFG 7, "
                f"{torch.get_num_threads()} threads, median of {args.repeats} interleaved rounds", ["run", "s/image", "ms/step", "vs diffusers", "vs previews off"], rows)
    cheap, full = preview_seconds(model, size, "Approx cheap"), preview_seconds(model, size, "Full")
    full_share = full * ((args.steps - 1) // 5) / off   # every 5th step, none at the last
    print_table("Previews timed alone, against Easel's image with previews off", ["preview", "each", "share"],
                [["Approx cheap, every step", f"{cheap * 1e3:.2f} ms", f"{cheap / (off / args.steps):.2%}"],
                 ["Full VAE, every 5 steps", f"{full * 1e3:.2f} ms", f"{full_share:.2%}"]])
    launch = launch_seconds(args.steps, size)
    print_table(f"Launch (app.py --api, fresh data folder, {args.steps}-step {size}x{size} txt2img over HTTP)",
                ["what", "seconds"],
                [["app.py start -> GET / 200", f"{launch['page']:.2f}"],
                 ["app.py start -> first image returned", f"{launch['first image']:.2f}"],
                 ["second image, request to response", f"{launch['next image (round trip)']:.2f}"]])
    imports = import_seconds()
    print_table("Where launch time goes: imports in a fresh interpreter, in app.py's order",
                ["import", "seconds"], [[name, f"{t:.2f}"] for name, t in imports.items()]
                + [["all three", f"{sum(imports.values()):.2f}"]])


if __name__ == "__main__":
    main()
