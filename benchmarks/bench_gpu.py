"""it/s and peak VRAM of Easel's own generation path on a CUDA GPU, full-size models with random weights.

    venv/bin/python -m benchmarks.bench_gpu                       # on a CUDA machine
    venv/bin/python -m benchmarks.bench_gpu --device cpu --smoke  # tiny models, checks the script stays correct

Rows: SD1.5 at 512x512 and SDXL at 1024x1024, batch 1, CFG 7, Euler a:
plain diffusers' pipeline on the same networks (the baseline each ratio is
against), then Easel with each attention backend (PyTorch SDPA; xformers
when installed); for SD1.5 also without live previews, with --medvram and
--lowvram offloading, and (last) with each `unet_compile` mode asked for.
it/s counts sampling steps only, timed on the device's own clock between
the ends of the first and the last step (StepClock); "image s" is a whole
20-step image, text encoding and VAE decode included. Peak VRAM is torch's
max allocated memory over the 20-step images. Weights are random
(no downloads); speed does not depend on their values.
"""
from __future__ import annotations

import argparse
import json
import time

import torch

from benchmarks.timing import print_table
from modules import devices

CASES = {"sd1": 512, "sdxl": 1024}
PROMPT, NEGATIVE = "a photo of a red circle on a blue background", "blurry"


def _random_model(family_id: str, device: torch.device, dtype: torch.dtype, smoke: bool):
    """A LoadedModel with the family's full-size configs and random weights, built directly on `device`."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from modules import checkpoints, model_families, sd_models

    if smoke:   # tiny real-layout model, through the same loader users' files go through
        import tempfile
        from pathlib import Path

        from tests.factories import make_tiny_checkpoint

        path = make_tiny_checkpoint(Path(tempfile.mkdtemp()), family_id)
        return sd_models.load_model(str(path), device, dtype)
    family = model_families.get_family(family_id)
    with torch.device(device):
        unet = UNet2DConditionModel.from_config(sd_models.read_config(family, "unet"))
        vae = AutoencoderKL.from_config(sd_models.read_config(family, "vae"))
        encoders = []
        for component in ("text_encoder", "text_encoder_2"):
            try:
                config = sd_models.read_config(family, component)
            except FileNotFoundError:
                continue
            cls = CLIPTextModelWithProjection if "WithProjection" in config["architectures"][0] else CLIPTextModel
            encoders.append(cls(CLIPTextConfig(**config)))
    networks = [unet.to(dtype), vae.to(dtype), *(e.to(dtype) for e in encoders)]
    for network in networks:
        network.eval().requires_grad_(False)
    import tempfile
    from pathlib import Path

    placeholder = Path(tempfile.mkdtemp()) / f"random-{family_id}.safetensors"   # CheckpointInfo stats its file
    placeholder.touch()
    info = checkpoints.CheckpointInfo(str(placeholder), f"random-{family_id}")
    return sd_models.LoadedModel(checkpoint=info, family=family, unet=unet, vae=vae, text_encoders=encoders,
                                 tokenizers=[sd_models.load_tokenizer(pad) for pad in family.pad_tokens],
                                 scheduler_config=sd_models.scheduler_config_for(family),
                                 vae_scaling_factor=float(vae.config.scaling_factor), device=device, dtype=dtype)


class StepClock:
    """Marks the end of each sampling step on the device's own timeline.

    On CUDA a mark is an event queued behind the step's kernels, so the time
    between the first and the last mark is what the GPU took for the steps in
    between, idle gaps included, however far ahead the CPU has run. (The first
    GPU run measured it/s as the difference of a 20-step and a 10-step image's
    wall times instead, and that amplified every hiccup of the host: see
    benchmarks/README.md.) On a CPU the marks are wall-clock times.
    """

    def __init__(self, device: torch.device):
        self.device, self.marks = device, []

    def mark(self) -> None:
        if self.device.type == "cuda":
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            self.marks.append(event)
        else:
            self.marks.append(time.perf_counter())

    def steps_per_second(self) -> float:
        """Steps after the first per second (call once the work is done: after a sync)."""
        if len(self.marks) < 2:
            return float("nan")
        first, last = self.marks[0], self.marks[-1]
        seconds = first.elapsed_time(last) / 1000 if self.device.type == "cuda" else last - first
        return (len(self.marks) - 1) / max(seconds, 1e-9)


def _timed(device: torch.device, run) -> tuple[float, float]:
    """(wall seconds, steps per second) of `run(clock)`, which makes one image and marks each step."""
    clock = StepClock(device)
    _sync(device)
    started = time.perf_counter()
    run(clock)
    _sync(device)
    return time.perf_counter() - started, clock.steps_per_second()


def _easel(model, size: int):
    """A function(steps) -> (seconds, it/s) making one image through Easel's own process_images."""
    from modules import processing

    def generate(steps: int) -> tuple[float, float]:
        p = processing.StableDiffusionProcessingTxt2Img(
            sd_model=model, prompt=PROMPT, negative_prompt=NEGATIVE, seed=1,
            steps=steps, cfg_scale=7.0, width=size, height=size, sampler_name="Euler a", do_not_save_samples=True)

        def run(clock: StepClock) -> None:
            previews_callback = processing._preview_callback

            def marking_callback(*args):   # the per-step callback process_images builds, marking each step first
                on_step = previews_callback(*args)
                return lambda index, total, x0: (clock.mark(), on_step(index, total, x0))

            processing._preview_callback = marking_callback
            try:
                processing.process_images(p)
            finally:
                processing._preview_callback = previews_callback

        return _timed(model.device, run)

    return generate


def _plain_diffusers(model, size: int):
    """A function(steps) -> (seconds, it/s) running plain diffusers' pipeline on `model`'s own networks."""
    from diffusers import EulerAncestralDiscreteScheduler, StableDiffusionPipeline, StableDiffusionXLPipeline

    scheduler = EulerAncestralDiscreteScheduler.from_config(model.scheduler_config)
    if len(model.text_encoders) == 1:
        pipe = StableDiffusionPipeline(vae=model.vae, text_encoder=model.text_encoders[0],
                                       tokenizer=model.tokenizers[0], unet=model.unet, scheduler=scheduler,
                                       safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    else:
        pipe = StableDiffusionXLPipeline(vae=model.vae, text_encoder=model.text_encoders[0],
                                         text_encoder_2=model.text_encoders[1], tokenizer=model.tokenizers[0],
                                         tokenizer_2=model.tokenizers[1], unet=model.unet, scheduler=scheduler)
    pipe.set_progress_bar_config(disable=True)

    def generate(steps: int) -> tuple[float, float]:
        def on_step_end(pipeline, index, timestep, kwargs, clock):
            clock.mark()
            return kwargs

        return _timed(model.device, lambda clock: pipe(
            PROMPT, negative_prompt=NEGATIVE, num_inference_steps=steps, guidance_scale=7.0, height=size,
            width=size, generator=torch.Generator(model.device).manual_seed(1),
            callback_on_step_end=lambda *args: on_step_end(*args, clock)))

    return generate


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def measure(generate, device: torch.device, steps: int, repeats: int = 3) -> dict:
    """Step rate, whole-image time and peak VRAM; `generate(steps)` -> (seconds, it/s) of one image.

    The first (warm-up) image of 2 steps pays kernel selection, allocator
    growth and, for compiled rows, the compile: reported as first_s. Then
    `repeats` full images; the fastest step rate and the fastest image are kept.
    """
    first, _ = generate(2)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    timings = [generate(steps) for _ in range(repeats)]
    peak = torch.cuda.max_memory_allocated() / 2 ** 30 if device.type == "cuda" else float("nan")
    return {"it_per_s": max(rate for _, rate in timings), "image_s": min(seconds for seconds, _ in timings),
            "peak_vram_gib": peak, "first_s": first}


def _passes(device: torch.device, compile_modes: list[str]) -> list[tuple[str, list[dict]]]:
    """(model, rows) in the order measured; each row names what differs from Easel's defaults.

    Compiled rows come last, on a fresh SD1.5 model: a compile can take
    minutes, and a run cut short by a time limit keeps every row before it.
    """
    backends = ["sdpa"] + (["xformers"] if device.type == "cuda" and devices._xformers_installed() else [])
    eager = [{"path": "diffusers", "attention": "sdpa", "compile": "-", "previews": "-"}]
    eager += [{"path": "easel", "attention": backend} for backend in backends]
    sd1 = eager + [{"path": "easel", "attention": "sdpa", "previews": "None"}]
    sd1 += [{"path": "easel", "attention": "sdpa", "offload": mode} for mode in ("model", "blocks")]
    passes = [("sd1", sd1), ("sdxl", eager)]
    if compile_modes:
        passes.append(("sd1", [{"path": "easel", "attention": "sdpa", "compile": mode, "previews": previews}
                               for mode in compile_modes for previews in ("Approx cheap", "None")]))
    defaults = {"compile": "Off", "offload": "none", "previews": "Approx cheap"}
    return [(family_id, [{**defaults, **case} for case in cases]) for family_id, cases in passes]


def _measure_case(model, case: dict, size: int, steps: int, repeats: int) -> dict:
    from modules import devices, offload, shared

    devices.apply_attention(model.unet, model.vae, case["attention"])
    if case["path"] == "diffusers":
        return measure(_plain_diffusers(model, size), model.device, steps, repeats)
    shared.opts.set("unet_compile", case["compile"])
    shared.opts.set("live_previews_enable", case["previews"] != "None")
    if case["offload"] != "none":
        for network in (model.unet, model.vae, *model.text_encoders):
            network.to("cpu")
        offload.apply(model, case["offload"], model.device)
    try:
        return measure(_easel(model, size), model.device, steps, repeats)
    finally:
        shared.opts.set("unet_compile", "Off")
        shared.opts.set("live_previews_enable", True)
        if case["offload"] != "none":
            offload.remove(model)
            for network in (model.unet, model.vae, *model.text_encoders):
                network.to(model.device)


def run(device: torch.device, smoke: bool, steps: int, compile_modes: tuple[str, ...] = (),
        on_row=None, repeats: int = 3) -> list[dict]:
    """Measure every row; `on_row(result)` sees each as it lands (a long GPU run keeps what it finished)."""
    from modules import options, shared

    dtype = torch.float16 if device.type == "cuda" else torch.float32
    saved_opts, shared.opts = shared.opts, options.Options()   # Easel's default settings, not a user's config
    results = []
    try:
        for family_id, cases in _passes(device, list(compile_modes)):
            size = 64 if smoke else CASES[family_id]
            model = _random_model(family_id, device, dtype, smoke)
            for case in cases:
                try:
                    result = {"model": family_id, "size": size, **case, **_measure_case(model, case, size, steps, repeats)}
                except Exception as error:   # one failing row (an xformers build, a compile) must not lose the rest
                    if smoke:
                        raise
                    result = {"model": family_id, "size": size, **case, "error": f"{type(error).__name__}: {error}"}
                results.append(result)
                if on_row is not None:
                    on_row(result)
            model.unload()
            del model
            if device.type == "cuda":
                torch.cuda.empty_cache()
    finally:
        shared.opts = saved_opts
    return results


def _row(r: dict, baselines: dict) -> list[str]:
    what = [r["model"], f"{r['size']}x{r['size']}", r["path"], r["attention"], r["compile"], r["offload"],
            r["previews"]]
    if "error" in r:
        return what + [r["error"][:60], "", "", "", ""]
    base = baselines.get(r["model"])
    ratio = f"{r['it_per_s'] / base:.2f}" if base else ""
    return what + [f"{r['it_per_s']:.2f}", ratio, f"{r['image_s']:.2f}", f"{r['first_s']:.1f}",
                   f"{r['peak_vram_gib']:.2f}"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--smoke", action="store_true", help="tiny models at 64x64: checks the script, not speed")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--compile", nargs="*", default=None, metavar="MODE",
                        help="unet_compile modes to add as SD1.5 rows (default on CUDA: Inductor and "
                             "Inductor + CUDA graphs; none on CPU)")
    parser.add_argument("--repeats", type=int, default=3, help="timed images per row (the fastest kept)")
    parser.add_argument("--json", help="also write the results here, after every row")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device here (use --device cpu --smoke to check the script)")
    if device.type == "cpu" and not args.smoke:
        parser.error("full-size models on the CPU take hours; use --smoke on CPU")
    from modules import unet_compile

    compile_modes = args.compile if args.compile is not None else (
        ["Inductor", unet_compile.CUDA_GRAPHS] if device.type == "cuda" else [])
    for mode in compile_modes:
        unet_compile.check_mode(mode)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    done = []

    def on_row(result: dict) -> None:
        done.append(result)
        print(json.dumps(result), flush=True)
        if args.json:
            with open(args.json, "w", encoding="utf-8") as f:
                json.dump({"device": name, "torch": torch.__version__, "smoke": args.smoke, "results": done}, f,
                          indent=2)

    results = run(device, args.smoke, args.steps, tuple(compile_modes), on_row, args.repeats)
    baselines = {r["model"]: r["it_per_s"] for r in results if r["path"] == "diffusers" and "error" not in r}
    print_table(f"Easel generation on {name} ({'smoke, tiny models' if args.smoke else 'random full-size weights'}, "
                f"batch 1, CFG 7, Euler a, {args.steps} steps, torch {torch.__version__})",
                ["model", "size", "path", "attention", "compile", "offload", "previews", "it/s", "vs diffusers",
                 "image s", "first image s", "peak VRAM GiB"], [_row(r, baselines) for r in results])


if __name__ == "__main__":
    main()
