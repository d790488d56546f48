"""Export the trained demo model (diffusers folders) to Easel's shipped single file.

    venv/bin/python -m training.export_demo [--final training/runs/demo/final] [--from-checkpoint CKPT]
        [--out models/Stable-diffusion/easel-demo.safetensors]

train_demo calls `export` at its end; run this by hand to re-export a finished
run. Weights are stored in fp16 to keep the file small (loading converts them
to fp32/bf16); the layout is the original single-file one
(model.diffusion_model.*, first_stage_model.*, cond_stage_model.*), written by
the same exporter that Easel's tests use, so the file loads through exactly the
code that loads third-party checkpoints.
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch

REPO = Path(__file__).resolve().parent.parent
MAX_BYTES = 40 * 1000 * 1000


def export(final_dir, path) -> Path:
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel

    from modules.checkpoint_export import export_original_checkpoint

    final_dir, path = Path(final_dir), Path(path)
    unet = UNet2DConditionModel.from_pretrained(final_dir / "unet")
    vae = AutoencoderKL.from_pretrained(final_dir / "vae")
    text_encoder = CLIPTextModel.from_pretrained(final_dir / "text_encoder")
    path.parent.mkdir(parents=True, exist_ok=True)
    export_original_checkpoint(unet, vae, text_encoder, path, dtype=torch.float16, extra_keys=schedule_markers(final_dir))
    size = path.stat().st_size
    if size > MAX_BYTES:
        raise ValueError(f"{path} is {size / 1e6:.1f} MB, over the {MAX_BYTES / 1e6:.0f} MB limit for the shipped demo")
    print(f"exported {path} ({size / 1e6:.1f} MB)", flush=True)
    return path


def schedule_markers(final_dir: Path) -> dict:
    """ComfyUI's marker keys for what the run trained: `v_pred` for v-prediction, `ztsnr` for a
    zero-terminal-SNR schedule. Easel's family detection reads them, as ComfyUI's does."""
    from modules.model_families import V_PRED_MARKER, ZTSNR_MARKER
    from training.train_demo import SCHEDULE_FILE

    path = final_dir / SCHEDULE_FILE
    schedule = json.loads(path.read_text()) if path.is_file() else {}  # runs before the file: epsilon, SD1 schedule
    markers = {}
    if schedule.get("prediction_type") == "v_prediction":
        markers[V_PRED_MARKER] = torch.tensor([])
    if schedule.get("zero_terminal_snr"):
        markers[ZTSNR_MARKER] = torch.tensor([])
    return markers


def final_from_checkpoint(checkpoint_path, final_dir) -> dict:
    """Write diffusers folders from a training checkpoint's EMA weights (for a run stopped
    before its last step). Returns the checkpoint's training state (phase, step, ...)."""
    from training.train_demo import EMA, build_models, write_schedule

    ck = torch.load(checkpoint_path, weights_only=False, map_location="cpu")
    if ck["state"]["phase"] == "vae":
        raise ValueError(f"{checkpoint_path} is still in the VAE phase (step {ck['state']['step']}); nothing to export")
    unet, vae, text_encoder = build_models(ck["args"]["seed"])
    unet.load_state_dict(ck["unet"]); vae.load_state_dict(ck["vae"]); text_encoder.load_state_dict(ck["text_encoder"])
    params = list(unet.parameters()) + list(text_encoder.parameters())
    ema = EMA(params, 0.0)
    ema.shadow = ck["ema"]
    ema.copy_to(params)
    final_dir = Path(final_dir)
    unet.save_pretrained(final_dir / "unet"); vae.save_pretrained(final_dir / "vae")
    text_encoder.save_pretrained(final_dir / "text_encoder")
    write_schedule(final_dir, ck["args"].get("prediction", "epsilon"), ck["args"].get("zero_terminal_snr", False),
                   ck["args"].get("terminal_signal"))
    return ck["state"]


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--final", default=str(REPO / "training" / "runs" / "demo" / "final"))
    ap.add_argument("--out", default=str(REPO / "models" / "Stable-diffusion" / "easel-demo.safetensors"))
    ap.add_argument("--from-checkpoint", default="",
                    help="export the EMA weights of this checkpoint.pt instead (a run stopped early); "
                         "also records its scaling factor and noise schedule in configs/easel-demo")
    args = ap.parse_args()
    if args.from_checkpoint:
        from training.train_demo import SCHEDULE_FILE, write_family_schedule, write_scaling_factor

        state = final_from_checkpoint(args.from_checkpoint, args.final)
        print(f"checkpoint at phase {state['phase']} step {state['step']}, scaling factor {state['scaling_factor']:.5f}")
        write_scaling_factor(state["scaling_factor"])
        write_family_schedule(json.loads((Path(args.final) / SCHEDULE_FILE).read_text()).get("terminal_signal"))
    export(args.final, args.out)
