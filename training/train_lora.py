"""Train a small LoRA on the Easel demo model that turns red into blue, and save it in kohya format.

    venv/bin/python -m training.train_lora                       # 1.5-3 minutes on 1 busy CPU core
    venv/bin/python -m training.train_lora --steps 20 --ckpt path/to/model.safetensors --out /tmp/x.safetensors

Measured on the shipped demo model (demo21, 2026-12-06, 150 steps of 8
images, lr 5e-3, 81 s of training on 2 CPU cores without bf16 units): blueness
minus redness of the circle's pixels (training/judge.py) in "a large red circle"
(4 images, seed 1, Euler a, 20 steps, CFG 7) is -291.9 without the tag, -4.8 with
`<lora:red-to-blue:0.5>` and +146.4 with `<lora:red-to-blue:1>`; without the
tag again it is the same (the weights are restored after each job; a test
checks it). Retrain it for each new demo
checkpoint: a LoRA only fits the weights it was trained on.

What it proves: a LoRA trained outside the app, saved the way kohya's
sd-scripts save one, loads in Easel with `<lora:red-to-blue:1>`; the effect
is weaker at 0.5 and gone without the tag (tests/test_lora.py).

Recipe: the demo model's own shapes dataset (training/shapes_dataset.py),
captions unchanged, target images with the red and blue channels swapped,
so "a red circle" learns to look blue (and blue red). Only the LoRA
matrices train: rank 4 on the U-Net attention projections (to_q, to_k,
to_v, to_out.0 of self- and cross-attention), applied during training as
forward hooks (y += up(down(x)) * alpha/rank), with the plain loss of the
model's prediction type (epsilon or v) on the model's own noise schedule
(zero terminal SNR included). Output: kohya keys
`lora_unet_<diffusers module path with _>.lora_down.weight`,
`.lora_up.weight`, `.alpha`, and sd-scripts' `ss_*` metadata.
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parent.parent
DEMO = REPO / "models" / "Stable-diffusion" / "easel-demo.safetensors"
TARGET_SUFFIXES = ("attn1.to_q", "attn1.to_k", "attn1.to_v", "attn1.to_out.0",
                   "attn2.to_q", "attn2.to_k", "attn2.to_v", "attn2.to_out.0")


class LoraAdapter:
    """Trainable down/up matrices for some Linear layers, added to their outputs through forward hooks."""

    def __init__(self, unet, rank: int, alpha: float, seed: int):
        generator = torch.Generator().manual_seed(seed)
        self.rank, self.alpha = rank, alpha
        self.layers: dict[str, tuple[torch.nn.Linear, torch.nn.Parameter, torch.nn.Parameter]] = {}
        self.handles = []
        for name, module in unet.named_modules():
            if isinstance(module, torch.nn.Linear) and name.endswith(TARGET_SUFFIXES):
                # kohya's init: down random (Kaiming-like), up zero, so training starts at the base model
                down = torch.nn.Parameter(torch.randn(rank, module.in_features, generator=generator)
                                          / module.in_features ** 0.5)
                up = torch.nn.Parameter(torch.zeros(module.out_features, rank))
                self.layers[name] = (module, down, up)
                self.handles.append(module.register_forward_hook(self._hook(down, up)))
        if not self.layers:
            raise ValueError("no attention projections found in the U-Net (not a diffusers UNet2DConditionModel?)")

    def _hook(self, down, up):
        scale = self.alpha / self.rank

        def add_lora(module, inputs, output):
            return output + F.linear(F.linear(inputs[0], down), up) * scale
        return add_lora

    def parameters(self) -> list[torch.nn.Parameter]:
        return [p for _, down, up in self.layers.values() for p in (down, up)]

    def remove(self):
        for handle in self.handles:
            handle.remove()

    def kohya_state_dict(self) -> dict[str, torch.Tensor]:
        state = {}
        for name, (_, down, up) in self.layers.items():
            key = "lora_unet_" + name.replace(".", "_")
            state[f"{key}.lora_down.weight"] = down.detach().float().contiguous()
            state[f"{key}.lora_up.weight"] = up.detach().float().contiguous()
            state[f"{key}.alpha"] = torch.tensor(float(self.alpha))
        return state


def swap_red_blue(images: np.ndarray) -> np.ndarray:
    """(N, H, W, 3) uint8 -> the same with the R and B channels exchanged: red objects become blue."""
    return images[..., ::-1].copy() if images.shape[-1] == 3 else images


def to_tensor(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def train(ckpt: str, out: str, steps: int, batch_size: int, rank: int, alpha: float, lr: float, seed: int,
          threads: int, device: str = "cpu") -> Path:
    from safetensors.torch import save_file

    from diffusers import DDPMScheduler
    from modules import sd_models, text_encoding
    from training.shapes_dataset import ShapesDataset
    from training.train_demo import diffusion_target

    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    model = sd_models.load_model(ckpt, torch.device(device), torch.float32)
    for module in (model.unet, model.vae, *model.text_encoders):
        module.requires_grad_(False)
    adapter = LoraAdapter(model.unet, rank, alpha, seed)
    optimizer = torch.optim.AdamW(adapter.parameters(), lr=lr, weight_decay=0.0)
    alphas = DDPMScheduler.from_config(model.scheduler_config).alphas_cumprod.to(device)
    dataset = ShapesDataset(seed=seed + 1)
    generator = torch.Generator().manual_seed(seed)
    embeddings_cache: dict[str, torch.Tensor] = {}

    def encode(captions):
        missing = [c for c in dict.fromkeys(captions) if c not in embeddings_cache]
        if missing:
            embeds = text_encoding.encode_prompts(model, missing).embeds
            embeddings_cache.update({c: e[None] for c, e in zip(missing, embeds)})
        return torch.cat([embeddings_cache[c] for c in captions]).to(device)

    started = time.time()
    for step in range(steps):
        images, captions = dataset.batch(step * batch_size, batch_size)
        x = to_tensor(swap_red_blue(images)).to(device)
        with torch.no_grad():
            posterior = model.vae.encode(x).latent_dist
            latents = posterior.sample(generator=None) * model.vae_scaling_factor
            cond = encode(captions)
        noise = torch.randn(latents.shape, generator=generator).to(device)
        t = torch.randint(0, len(alphas), (latents.shape[0],), generator=generator).to(device)
        a = alphas[t].view(-1, 1, 1, 1)
        noisy = a.sqrt() * latents + (1 - a).sqrt() * noise
        pred = model.unet(noisy, t, encoder_hidden_states=cond).sample
        loss = F.mse_loss(pred.float(), diffusion_target(latents, noise, a, model.family.prediction_type))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step % 25 == 0 or step == steps - 1:
            print(f"step {step + 1}/{steps}  loss {loss.item():.4f}  {time.time() - started:.0f}s", flush=True)
    adapter.remove()

    out_path = Path(out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    metadata = {"ss_network_module": "networks.lora", "ss_network_dim": str(rank), "ss_network_alpha": str(alpha),
                "ss_base_model_version": "easel-demo", "ss_output_name": out_path.stem,
                "ss_training_comment": "training/train_lora.py: red <-> blue channel swap on the shapes dataset",
                "ss_steps": str(steps)}
    save_file(adapter.kohya_state_dict(), str(out_path), metadata=metadata)
    print(f"saved {out_path} ({len(adapter.layers)} layers, rank {rank})")
    return out_path


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", default=str(DEMO), help="base model (default: the shipped demo model)")
    parser.add_argument("--out", default=str(REPO / "models" / "Lora" / "red-to-blue.safetensors"))
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--rank", type=int, default=4)
    parser.add_argument("--alpha", type=float, default=4.0)
    parser.add_argument("--lr", type=float, default=5e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if not Path(args.ckpt).exists():
        raise SystemExit(f"--ckpt: {args.ckpt} does not exist (train the demo model first: python -m training.train_demo)")
    train(args.ckpt, args.out, args.steps, args.batch_size, args.rank, args.alpha, args.lr, args.seed, args.threads,
          args.device)


if __name__ == "__main__":
    main()
