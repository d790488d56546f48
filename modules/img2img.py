"""img2img and inpainting: `StableDiffusionProcessingImg2Img` and its start latents.

The generation loop is processing.py's; this class fills its hooks:
- init_job: init images made RGB (EXIF orientation, alpha flattened onto
  white) and brought to the generation size by `resize_mode`; the mask
  binarised, inverted, blurred, and for "only masked" the crop around it.
- before_sampling: the init latents (VAE mean x scaling factor), the tail of
  the schedule that `denoising_strength` asks for (diffusers' img2img
  pipeline: the last int(steps * strength) timesteps, `set_begin_index`,
  `add_noise` at the first of them); with a mask, latent blending after each
  step (ordinary checkpoints) or mask + masked-image latents as extra U-Net
  input (inpainting checkpoints).
- postprocess_images: the unmasked original pixels pasted back, and the
  "only masked" crop pasted into the full picture.
Strength 0 (or a strength that leaves no step to run) returns the init image
itself; strength 1 starts from pure noise like txt2img.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps

from modules import masking
from modules.processing import StableDiffusionProcessing, _setting, latent_factor

RESIZE_MODES = ("Just resize", "Crop and resize", "Resize and fill", "Just resize (latent upscale)")
INPAINTING_FILL = ("fill", "original", "latent noise", "latent nothing")
MAX_MASK_BLUR = 64


@dataclass
class StableDiffusionProcessingImg2Img(StableDiffusionProcessing):
    init_images: list = field(default_factory=list)      # PIL images; image i of the job uses init_images[i % n]
    resize_mode: int = 0
    denoising_strength: float | None = 0.75
    image_cfg_scale: float | None = None                 # instruct-pix2pix only; accepted, not used
    mask: Any = None                                     # PIL image, white (or opaque) = repaint
    mask_blur_x: int = 4
    mask_blur_y: int = 4
    mask_blur: int | None = None                         # sets both x and y when given
    inpainting_fill: int = 0
    inpaint_full_res: bool = True
    inpaint_full_res_padding: int = 0
    inpainting_mask_invert: int = 0
    initial_noise_multiplier: float | None = None
    latent_mask: Any = None
    include_init_images: bool = False

    is_img2img = True
    outdir_kind = "img2img-images"

    def __post_init__(self):
        if self.mask_blur is not None:
            self.mask_blur_x = self.mask_blur_y = self.mask_blur
        self._prepared: list[_InitImage] = []
        self._latent_cache: dict[int, torch.Tensor] = {}
        self._mask_image = self._overlay = self._crop = None
        self._unchanged = False

    @property
    def image_mask(self):
        """A1111's name for the mask."""
        return self.mask

    # -- hooks -------------------------------------------------------------------------------------------------
    def check_fields(self, family) -> None:
        if not isinstance(self.init_images, (list, tuple)) or not self.init_images:
            raise ValueError("init_images: at least one image is required for img2img")
        for i, image in enumerate(self.init_images):
            if not isinstance(image, Image.Image):
                raise ValueError(f"init_images[{i}]: expected an image, got {type(image).__name__}")
        if self.mask is not None and not isinstance(self.mask, Image.Image):
            raise ValueError(f"mask: expected an image, got {type(self.mask).__name__}")
        strength = self.denoising_strength
        if strength is None or not 0.0 <= float(strength) <= 1.0:
            raise ValueError(f"denoising_strength must be between 0 and 1, got {strength!r}")
        if self.resize_mode not in range(len(RESIZE_MODES)):
            raise ValueError(f"resize_mode must be 0..3 ({', '.join(RESIZE_MODES)}), got {self.resize_mode!r}")
        if self.inpainting_fill not in range(len(INPAINTING_FILL)):
            raise ValueError(f"inpainting_fill must be 0..3 ({', '.join(INPAINTING_FILL)}), "
                             f"got {self.inpainting_fill!r}")
        for name in ("mask_blur_x", "mask_blur_y"):
            value = getattr(self, name)
            if not 0 <= value <= MAX_MASK_BLUR:
                raise ValueError(f"{name} must be between 0 and {MAX_MASK_BLUR}, got {value!r}")
        if not 0 <= self.inpaint_full_res_padding <= 256:
            raise ValueError(f"inpaint_full_res_padding must be between 0 and 256, got "
                             f"{self.inpaint_full_res_padding!r}")
        multiplier = self.noise_multiplier()
        if not 0.0 <= multiplier <= 2.0:
            raise ValueError(f"initial_noise_multiplier must be between 0 and 2, got {multiplier!r}")

    def noise_multiplier(self) -> float:
        value = self.initial_noise_multiplier
        return float(_setting("initial_noise_multiplier", 1.0) if value is None else value)

    def init_job(self, model) -> None:
        self._latent_cache = {}
        self._mask_image, self._overlay, self._crop = None, None, None
        first = flatten(self.init_images[0])
        if self.mask is not None:
            self._prepare_mask(first.size)
        self._prepared = [self._prepare_image(flatten(image)) for image in self.init_images]
        self._infotext_params()

    def before_sampling(self, model, scheduler, request, state, first: int) -> None:
        batch = request.noise.shape[0]
        device = model.device
        init = torch.cat([self._init_latent(model, i) for i in range(first, first + batch)]).to(device)
        noise = request.noise.to(device, torch.float32) * self.noise_multiplier()
        timesteps, run = strength_timesteps(scheduler, self.steps, float(self.denoising_strength),
                                            bool(_setting("img2img_fix_steps", False)), device)
        state.sampling_steps = run
        keep = self._keep_mask(model, init.shape[-2:], device) if self._mask_image is not None else None
        if keep is not None and self.inpainting_fill == 2:      # latent noise
            init = init * keep + noise * (1 - keep)
        elif keep is not None and self.inpainting_fill == 3:    # latent nothing
            init = init * keep
        request.timesteps = timesteps
        self._unchanged = run == 0
        if run == 0:
            request.init_latents = init
            return
        if float(self.denoising_strength) >= 1.0:
            request.init_latents = noise * scheduler.init_noise_sigma
        else:
            request.init_latents = scheduler.add_noise(init, noise, timesteps[:1].repeat(batch))
        if is_inpainting_model(model):
            request.concat_latents = self._inpainting_conditioning(model, first, batch)
        elif keep is not None:
            request.after_step = latent_blender(scheduler, timesteps, init, noise, keep)

    def postprocess_images(self, model, images: list, first: int) -> list:
        out = []
        for offset, image in enumerate(images):
            prepared = self._prepared[(first + offset) % len(self._prepared)]
            if self._unchanged:
                out.append(prepared.original.copy())
                continue
            if self._crop is not None:
                x1, y1, x2, y2 = self._crop
                whole = prepared.original.copy()
                whole.paste(image.resize((x2 - x1, y2 - y1), Image.LANCZOS), (x1, y1))
                image = whole
            if self._overlay is not None:
                image = masking.composite(image, prepared.original, self._overlay)
            out.append(image)
        return out

    # -- preparation ---------------------------------------------------------------------------------------------
    def _prepare_mask(self, size) -> None:
        mask = masking.binary_mask(self.mask)
        if mask.size != size:   # a mask drawn on a scaled copy: stretch it onto the image
            mask = mask.resize(size, Image.NEAREST)
        if self.inpainting_mask_invert:
            mask = ImageOps.invert(mask)
        mask = masking.blur(mask, self.mask_blur_x, self.mask_blur_y)
        if self.inpaint_full_res:
            box = masking.crop_region(mask, int(self.inpaint_full_res_padding))
            if box is not None:
                self._crop = masking.expand_to_aspect(box, self.width, self.height, mask.width, mask.height)
                self._overlay = mask
                self._mask_image = resize_image(2, mask.crop(self._crop), self.width, self.height)
                return
        mode = 0 if self.resize_mode == 3 else self.resize_mode
        self._mask_image = resize_image(mode, mask, self.width, self.height)
        self._overlay = masking.overlay_mask(self._mask_image)

    def _prepare_image(self, image: Image.Image) -> "_InitImage":
        if self._crop is None:
            # latent upscale encodes at the image's own size; the pasted-back original must match the output
            image = resize_image(0 if self.resize_mode == 3 and self.mask is not None else self.resize_mode,
                                 image, self.width, self.height)
        original = image
        if self._crop is not None:
            image = resize_image(2, image.crop(self._crop), self.width, self.height)
        if self._mask_image is not None and self.inpainting_fill == 0:
            image = masking.fill(image, self._mask_image)
        return _InitImage(original=original, pixels=image)

    def _init_latent(self, model, index: int) -> torch.Tensor:
        """(1, C, h, w) latent of image `index` of the job, encoded once per distinct init image."""
        key = index % len(self._prepared)
        if key not in self._latent_cache:
            image = self._prepared[key].pixels
            factor = latent_factor(model)
            size = (self.height // factor, self.width // factor)
            if image.size != (self.width, self.height):   # resize mode 3: encode as is, upscale the latent
                image = image.resize((max(factor, image.width // factor * factor),
                                      max(factor, image.height // factor * factor)), Image.LANCZOS)
            latent = encode_images(model, [image])
            if latent.shape[-2:] != size:
                latent = torch.nn.functional.interpolate(latent, size=size, mode="bilinear")
            self._latent_cache[key] = latent.cpu()
        return self._latent_cache[key]

    def _keep_mask(self, model, latent_size, device) -> torch.Tensor:
        """(1, 1, h, w): 1 where the original latent is kept, 0 where it is repainted (rounded, as A1111)."""
        small = self._mask_image.resize((latent_size[1], latent_size[0]), Image.BILINEAR)
        repaint = torch.from_numpy((np.asarray(small, dtype=np.float32) >= THRESHOLD_LATENT).astype(np.float32))
        return (1.0 - repaint)[None, None].to(device)

    def _inpainting_conditioning(self, model, first: int, batch: int) -> torch.Tensor:
        images = [self._prepared[(first + i) % len(self._prepared)].pixels for i in range(batch)]
        mask = None
        if self._mask_image is not None:
            mask = torch.from_numpy((np.asarray(self._mask_image, dtype=np.float32) >= 128).astype(np.float32))
        return inpainting_conditioning(model, images, mask)

    def _infotext_params(self) -> None:
        params = self.extra_generation_params
        if self.mask is None:
            return
        if self.mask_blur_x > 0 or self.mask_blur_y > 0:
            params["Mask blur"] = self.mask_blur_x if self.mask_blur_x == self.mask_blur_y else None
            if self.mask_blur_x != self.mask_blur_y:
                params["Mask blur x"], params["Mask blur y"] = self.mask_blur_x, self.mask_blur_y
        if self.inpainting_mask_invert:
            params["Mask mode"] = "Inpaint not masked"
        params["Masked content"] = INPAINTING_FILL[self.inpainting_fill]
        if self._crop is not None:
            params["Inpaint area"] = "Only masked"
            params["Masked area padding"] = self.inpaint_full_res_padding
        if self.noise_multiplier() != 1.0:
            params["Noise multiplier"] = self.noise_multiplier()


THRESHOLD_LATENT = 127.5


@dataclass
class _InitImage:
    original: Image.Image      # what unmasked output pixels are copied from (generation size, or the full picture)
    pixels: Image.Image        # what is encoded (the crop for "only masked"; masked area filled for "fill")


# -- helpers shared with hires fix ------------------------------------------------------------------------------
def flatten(image: Image.Image) -> Image.Image:
    """RGB image as the user sees it: EXIF orientation applied, transparency composited onto white."""
    image = ImageOps.exif_transpose(image)
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, image.convert("RGBA")).convert("RGB")
    return image.convert("RGB")


def resize_image(mode: int, image: Image.Image, width: int, height: int) -> Image.Image:
    """A1111's resize modes: 0 (and 3) stretch, 1 scale to cover and crop the centre, 2 scale to fit and extend
    the edge pixels into the empty bands."""
    if image.size == (width, height):
        return image
    if mode in (0, 3):
        return image.resize((width, height), Image.LANCZOS)
    if mode == 1:
        return ImageOps.fit(image, (width, height), Image.LANCZOS)
    if mode == 2:
        inner = ImageOps.contain(image, (width, height), Image.LANCZOS)
        pixels = np.asarray(inner)
        top, left = (height - inner.height) // 2, (width - inner.width) // 2
        pad = [(top, height - inner.height - top), (left, width - inner.width - left)] + [(0, 0)] * (pixels.ndim - 2)
        return Image.fromarray(np.pad(pixels, pad, mode="edge"), inner.mode)
    raise ValueError(f"resize_mode must be 0..3, got {mode!r}")


def images_to_tensor(images: list[Image.Image]) -> torch.Tensor:
    """PIL RGB images (same size) -> (B, 3, H, W) in [-1, 1]."""
    arrays = [np.asarray(image.convert("RGB"), dtype=np.float32) / 127.5 - 1.0 for image in images]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)


@torch.inference_mode()
def encode_pixels(model, pixels: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) in [-1, 1] -> scaled latents (B, C, H/f, W/f): the VAE posterior's mean x scaling factor."""
    vae = model.vae
    dtype = next(vae.parameters()).dtype
    posterior = vae.encode(pixels.to(model.device, dtype)).latent_dist
    return posterior.mean.float() * model.vae_scaling_factor


def encode_images(model, images: list[Image.Image]) -> torch.Tensor:
    return encode_pixels(model, images_to_tensor(images))


def strength_timesteps(scheduler, steps: int, strength: float, fix_steps: bool, device) -> tuple[torch.Tensor, int]:
    """(timesteps to run, user steps they make) for a denoising strength, as diffusers' img2img pipeline.

    The schedule for `steps` is set and its last int(steps * strength) steps
    are run (A1111 shows that many). With `fix_steps` (A1111's
    img2img_fix_steps, and always for hires fix) the schedule is made for
    steps / strength so that exactly `steps` are run.
    """
    if strength <= 0:
        scheduler.set_timesteps(steps, device=device)
        run, total = 0, steps
    elif fix_steps and strength < 1.0:
        total = max(steps, int(steps / strength))
        scheduler.set_timesteps(total, device=device)
        run = steps
    else:
        total = steps
        scheduler.set_timesteps(total, device=device)
        run = min(int(steps * strength), steps)
    start = (total - run) * scheduler.order
    if hasattr(scheduler, "set_begin_index"):
        scheduler.set_begin_index(start)
    return scheduler.timesteps[start:], run


def latent_blender(scheduler, timesteps, init: torch.Tensor, noise: torch.Tensor, keep: torch.Tensor):
    """after_step for ordinary checkpoints with a mask: the kept area follows the init latent, noised to the
    level of the next step (clean after the last), so only the masked area changes (diffusers' inpaint
    pipeline does the same for 4-channel U-Nets)."""
    count = len(timesteps)

    def blend(index: int, latents: torch.Tensor) -> torch.Tensor:
        if index + 1 < count:
            noised = scheduler.add_noise(init, noise, timesteps[index + 1:index + 2].repeat(init.shape[0]))
        else:
            noised = init
        return keep * noised + (1.0 - keep) * latents

    return blend


def is_inpainting_model(model) -> bool:
    """9-channel U-Net (latents + mask + masked-image latents)."""
    return getattr(model.unet.config, "in_channels", 4) == 9


def inpainting_conditioning(model, images: list[Image.Image] | None, mask: torch.Tensor | None,
                            batch: int | None = None, size: tuple[int, int] | None = None) -> torch.Tensor:
    """(B, 5, h, w) extra U-Net input for inpainting checkpoints: the mask at latent size and the latents of the
    image with the masked area blanked (diffusers' StableDiffusionInpaintPipeline layout).

    `mask` (H, W) is 1 where repainted; None repaints everything (img2img and
    txt2img with such a checkpoint: the image is blank, the mask all ones).
    `images` None means blank images of `size` (width, height) for `batch` images.
    """
    if images is not None:
        pixels = images_to_tensor(images)
    else:
        pixels = torch.zeros(batch, 3, size[1], size[0])
    repaint = torch.ones(pixels.shape[-2:]) if mask is None else mask
    masked = encode_pixels(model, pixels * (1.0 - repaint)[None, None])
    small = torch.nn.functional.interpolate(repaint[None, None], size=masked.shape[-2:])
    return torch.cat([small.expand(masked.shape[0], 1, -1, -1).to(masked.device), masked], dim=1)


def add_inpainting_model_conditioning(p, model, request) -> None:
    """txt2img (and hires fix) with an inpainting checkpoint: repaint everything (all-ones mask, blank image)."""
    if not is_inpainting_model(model):
        return
    batch, _, h, w = request.noise.shape
    factor = latent_factor(model)
    request.concat_latents = inpainting_conditioning(model, None, None, batch=batch, size=(w * factor, h * factor))
