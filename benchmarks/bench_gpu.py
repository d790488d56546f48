"""it/s and peak VRAM of Easel's own generation path on a CUDA GPU, full-size models with random weights.

    venv/bin/python -m benchmarks.bench_gpu                       # on a CUDA machine
    venv/bin/python -m benchmarks.bench_gpu --device cpu --smoke  # tiny models, checks the script stays correct

Rows: SD1.5 at 512x512 and SDXL at 1024x1024, batch 1, CFG 7, Euler a, for
each attention backend (PyTorch SDPA; xformers when installed), then SD1.5
with --medvram and --lowvram offloading. it/s counts sampling steps only:
it is 10 / (time of a 20-step image - time of a 10-step image), so text
encoding and VAE decode cancel out. Peak VRAM is torch's max allocated
memory over the 20-step image. Weights are random (no downloads); speed does
not depend on their values.
"""
from __future__ import annotations

import argparse
import json
import time

import torch

from benchmarks.timing import print_table

CASES = {"sd1": 512, "sdxl": 1024}


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
    info = checkpoints.CheckpointInfo(f"random-{family_id}.safetensors", f"random-{family_id}")
    return sd_models.LoadedModel(checkpoint=info, family=family, unet=unet, vae=vae, text_encoders=encoders,
                                 tokenizers=[sd_models.load_tokenizer(pad) for pad in family.pad_tokens],
                                 scheduler_config=sd_models.scheduler_config_for(family),
                                 vae_scaling_factor=float(vae.config.scaling_factor), device=device, dtype=dtype)


def _generate(model, size: int, steps: int) -> float:
    from modules import processing

    p = processing.StableDiffusionProcessingTxt2Img(
        sd_model=model, prompt="a photo of a red circle on a blue background", negative_prompt="blurry", seed=1,
        steps=steps, cfg_scale=7.0, width=size, height=size, sampler_name="Euler a", do_not_save_samples=True)
    if model.device.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    processing.process_images(p)
    if model.device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - started


def measure(model, size: int, steps: int) -> dict:
    """it/s over the last `steps - steps // 2` steps and peak VRAM of one full image."""
    _generate(model, size, 2)   # warm-up: kernels, allocator, tokenizer caches
    if model.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    full = _generate(model, size, steps)
    peak = torch.cuda.max_memory_allocated() / 2 ** 30 if model.device.type == "cuda" else float("nan")
    half = _generate(model, size, steps // 2)
    its = (steps - steps // 2) / max(full - half, 1e-9)
    return {"it_per_s": its, "image_s": full, "peak_vram_gib": peak}


def run(device: torch.device, smoke: bool, steps: int) -> list[dict]:
    from modules import devices, offload

    dtype = torch.float16 if device.type == "cuda" else torch.float32
    backends = ["sdpa"] + (["xformers"] if device.type == "cuda" and devices._xformers_installed() else [])
    results = []
    for family_id, size in CASES.items():
        size = 64 if smoke else size
        model = _random_model(family_id, device, dtype, smoke)
        for backend in backends:
            devices.apply_attention(model.unet, model.vae, backend)
            results.append({"model": family_id, "size": size, "attention": backend, "offload": "none",
                            **measure(model, size, steps)})
        if family_id == "sd1":
            devices.apply_attention(model.unet, model.vae, "sdpa")
            for mode in ("model", "blocks"):
                for network in (model.unet, model.vae, *model.text_encoders):
                    network.to("cpu")
                offload.apply(model, mode, device)
                results.append({"model": family_id, "size": size, "attention": "sdpa", "offload": mode,
                                **measure(model, size, steps)})
                offload.remove(model)
                for network in (model.unet, model.vae, *model.text_encoders):
                    network.to(device)
        model.unload()
        del model
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--smoke", action="store_true", help="tiny models at 64x64: checks the script, not speed")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device here (use --device cpu --smoke to check the script)")
    if device.type == "cpu" and not args.smoke:
        parser.error("full-size models on the CPU take hours; use --smoke on CPU")
    results = run(device, args.smoke, args.steps)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    rows = [[r["model"], f"{r['size']}x{r['size']}", r["attention"], r["offload"], f"{r['it_per_s']:.2f}",
             f"{r['image_s']:.2f}", f"{r['peak_vram_gib']:.2f}"] for r in results]
    print_table(f"Easel generation on {name} ({'smoke, tiny models' if args.smoke else 'random full-size weights'}, "
                f"batch 1, CFG 7, Euler a, {args.steps} steps, torch {torch.__version__})",
                ["model", "size", "attention", "offload", "it/s", "image s", "peak VRAM GiB"], rows)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"device": name, "smoke": args.smoke, "results": results}, f, indent=2)


if __name__ == "__main__":
    main()
