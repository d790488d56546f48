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


def _cheap_pixels(latent: torch.Tensor, latent_rgb_factors) -> torch.Tensor:
    """latent (C, H, W) -> uint8 (H, W, 3) on the latent's device via the family's linear map."""
    factors = torch.tensor(latent_rgb_factors, dtype=torch.float32, device=latent.device)
    rgb = torch.einsum("chw,cr->hwr", latent.detach().float(), factors)
    return ((rgb.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


class PendingPreview:
    """A cheap preview whose pixels are on their way to the CPU.

    On a GPU, reading a preview's pixels right away would make the CPU wait for
    every queued kernel each step, leaving the GPU idle while the next step is
    launched: measured on an H100, previews every step cut SD1.5 from 33.7 to
    25.5 it/s. So the map runs on the GPU, the small uint8 copy to pinned memory
    is queued behind it, and the image is built a step or two later, once the copy
    has landed (`ready`). On a CPU the pixels are there at once.
    """

    def __init__(self, latent: torch.Tensor, latent_rgb_factors):
        pixels = _cheap_pixels(latent, latent_rgb_factors)
        self._event = None
        if pixels.device.type == "cuda":
            self._pixels = pixels.to("cpu", non_blocking=True)   # pinned, so it does not block
            self._event = torch.cuda.Event()
            self._event.record()
        else:
            self._pixels = pixels.cpu()

    def ready(self) -> bool:
        return self._event is None or self._event.query()

    def image(self) -> Image.Image:
        if self._event is not None:
            self._event.synchronize()
        return Image.fromarray(np.ascontiguousarray(self._pixels.numpy()), "RGB")


def tensor_to_images(decoded: torch.Tensor) -> list[Image.Image]:
    """VAE output (B, 3, H, W) in [-1, 1] -> PIL images."""
    pixels = ((decoded.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return [Image.fromarray(p.permute(1, 2, 0).cpu().numpy(), "RGB") for p in pixels]


VAE_TILING_CHOICES = ("Auto", "On", "Off")
# "Auto" tiles latents with more than 128x128 positions (above 1024x1024 pixels
# for SD's 8x VAE): a whole SD1.5 VAE decode in fp32 added ~1 GiB of peak
# memory at 512 px and ~2.1 GiB at 768 px (benchmarks/bench_vae.py), growing
# with the pixel count: ~4 GiB at 1024 px, ~15 GiB at 2048 px. Tiles cost
# more time (overlap), so small images stay whole.
VAE_TILING_AUTO_LATENT_AREA = 128 * 128


def wants_tiled_decode(latents: torch.Tensor, tiling: str) -> bool:
    """Whether the "vae_tiling" setting asks for tiles for a latent of this size."""
    if tiling not in VAE_TILING_CHOICES:
        raise ValueError(f"vae_tiling must be one of {', '.join(VAE_TILING_CHOICES)}; got {tiling!r}")
    if tiling == "Auto":
        return latents.shape[-2] * latents.shape[-1] > VAE_TILING_AUTO_LATENT_AREA
    return tiling == "On"


def _tiling_setting() -> str:
    from modules import shared

    return getattr(shared.opts, "vae_tiling", "Auto") if shared.opts is not None else "Auto"


def decode_latents(model, latents: torch.Tensor, tiling: str | None = None) -> torch.Tensor:
    """Scaled latents (B, C, h, w) -> pixels (B, 3, H, W) in [-1, 1] with the model's VAE.

    tiling: "Auto" / "On" / "Off" (default: the vae_tiling setting). Tiles are
    diffusers' own AutoencoderKL tiling (overlapping tiles of the VAE's
    sample_size, blended at the borders); a latent no larger than one tile is
    decoded whole either way.
    """
    vae = model.vae
    vae_dtype = next(vae.parameters()).dtype
    if wants_tiled_decode(latents, tiling or _tiling_setting()):
        vae.enable_tiling()
    else:
        vae.disable_tiling()
    channels_last = use_channels_last(vae, offloaded=bool(getattr(model, "offload_hooks", None)))
    latents = latents.to(model.device, vae_dtype) / model.vae_scaling_factor
    if channels_last:
        latents = latents.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        return vae.decode(latents).sample.contiguous()


def use_channels_last(vae, offloaded: bool = False) -> bool:
    """Put the VAE's weights in channels-last memory format (once) and say whether they are.

    The VAE is almost all 3x3 convolutions over wide, high-resolution feature
    maps, which oneDNN runs much faster channels-last: a 512x512 SD1.5 decode
    on 2 CPU cores took 2.8 s instead of 6.8-8.1 s in bf16 and 9.4 s instead of
    13.5 s in fp32 (benchmarks/bench_unet_variants.py vae_bf16 vs vae_bf16_cl),
    fp32 outputs equal within 1e-4. Converting in place keeps a VAE swapped in
    later (modules/sd_vae.py) on the same footing. Offloaded VAEs (--medvram,
    --lowvram) keep their weights where accelerate's hooks put them.
    """
    weight = getattr(getattr(getattr(vae, "decoder", None), "conv_in", None), "weight", None)
    if offloaded or weight is None or weight.device.type == "meta":
        return False
    if not weight.is_contiguous(memory_format=torch.channels_last):
        vae.to(memory_format=torch.channels_last)
    return True


def make_preview(model, latent: torch.Tensor, method: str) -> Image.Image | None:
    """Preview of one latent (C, h, w) by the chosen method."""
    if method == "Full":
        return tensor_to_images(decode_latents(model, latent[None]))[0]
    if method == "Approx cheap":
        return PendingPreview(latent, model.family.latent_rgb_factors).image()   # at once: waits for the copy
    return None
