"""Live previews: turn a (predicted clean) latent into a small RGB image.

"Approx cheap" is the fixed 4x3 latent -> RGB map of the model family
(REFERENCE section 7): one tiny matmul, cheap enough to run every step.
"Full" decodes with the VAE: exact but costly, so it runs on a schedule.
"""
from __future__ import annotations

import numpy as np
import torch
from PIL import Image

PREVIEW_METHODS = ("Approx cheap", "Full", "None")


def cheap_preview(latent: torch.Tensor, latent_rgb_factors) -> Image.Image:
    """latent (C, H, W) -> RGB image at latent resolution via the family's linear map."""
    factors = torch.tensor(latent_rgb_factors, dtype=torch.float32)
    rgb = torch.einsum("chw,cr->hwr", latent.detach().float().cpu(), factors)
    pixels = ((rgb.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy()
    return Image.fromarray(np.ascontiguousarray(pixels), "RGB")


def tensor_to_images(decoded: torch.Tensor) -> list[Image.Image]:
    """VAE output (B, 3, H, W) in [-1, 1] -> PIL images."""
    pixels = ((decoded.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return [Image.fromarray(p.permute(1, 2, 0).cpu().numpy(), "RGB") for p in pixels]


def decode_latents(model, latents: torch.Tensor) -> torch.Tensor:
    """Scaled latents (B, C, h, w) -> pixels (B, 3, H, W) in [-1, 1] with the model's VAE."""
    vae = model.vae
    vae_dtype = next(vae.parameters()).dtype
    with torch.inference_mode():
        return vae.decode(latents.to(model.device, vae_dtype) / model.vae_scaling_factor).sample


def make_preview(model, latent: torch.Tensor, method: str) -> Image.Image | None:
    """Preview of one latent (C, h, w) by the chosen method."""
    if method == "Full":
        return tensor_to_images(decode_latents(model, latent[None]))[0]
    if method == "Approx cheap":
        return cheap_preview(latent, model.family.latent_rgb_factors)
    return None
