"""Outpainting mk2 (img2img Script): extend the canvas on chosen sides and inpaint the new border.

A1111's script of the same title and argument order (info, pixels,
mask_blur, direction, noise_q, color_variation), so API clients that send
`script_name: "Outpainting mk2"` with A1111's script_args keep working;
Easel adds a seventh argument, the masked-content mode of the inpaint pass.

How: each init image is placed on a larger canvas; the new border is
pre-filled with the edge colours spread outward (masking.fill) plus a little
noise with a 1/f^q spectrum so the model has texture to continue, and then
inpainted at the canvas size with the job's prompt, sampler and denoising
strength. The canvas grows by `pixels` on each chosen side; when a side of
the result would not be a multiple of 8 (the model's latent grid), the few
extra pixels go to the expanded sides of that axis (to the right/bottom when
that axis is not expanded). Pixels of the original that the (blurred) mask
does not reach are copied back unchanged by the inpaint pass.
"""
from __future__ import annotations

import gradio as gr
import numpy as np
from PIL import Image

# modules.processing is imported where it is used: it loads torch, and this file is
# imported while the page is built (tests/test_startup_imports.py)
from modules import masking, scripts

DIRECTIONS = ("left", "right", "up", "down")
MASKED_CONTENT = ("fill", "original", "latent noise", "latent nothing")   # img2img's inpainting_fill order
MULTIPLE = 8
MAX_PIXELS = 1024


def expansion(size: tuple[int, int], pixels: int, directions) -> tuple[int, int, int, int]:
    """(left, right, up, down) pixels to add so that each side of the result is a multiple of 8."""
    width, height = size
    grow = {d: (pixels if d in directions else 0) for d in DIRECTIONS}
    for first, second, length in (("left", "right", width), ("up", "down", height)):
        extra = -(length + grow[first] + grow[second]) % MULTIPLE
        if grow[first] and grow[second]:
            grow[first] += extra // 2
            grow[second] += extra - extra // 2
        elif grow[first]:
            grow[first] += extra
        else:
            grow[second] += extra
    return grow["left"], grow["right"], grow["up"], grow["down"]


def spectral_noise(size: tuple[int, int], falloff: float, seed: int) -> np.ndarray:
    """(H, W) noise of unit standard deviation whose spectrum falls as 1/f^falloff (higher = smoother)."""
    width, height = size
    rng = np.random.default_rng(seed)
    spectrum = np.fft.rfft2(rng.standard_normal((height, width)))
    fy = np.fft.fftfreq(height)[:, None]
    fx = np.fft.rfftfreq(width)[None, :]
    freq = np.sqrt(fx * fx + fy * fy)
    freq[0, 0] = 1.0                      # keep the mean term finite (it is removed below)
    noise = np.fft.irfft2(spectrum / freq ** max(0.0, falloff), s=(height, width))
    noise -= noise.mean()
    std = noise.std()
    return noise / std if std > 0 else noise


def extend(image: Image.Image, grow, falloff: float, variation: float, seed: int) -> tuple[Image.Image, Image.Image]:
    """(canvas with the pre-filled border, L mask: 255 on the new border, 0 on the original)."""
    left, right, up, down = grow
    size = (image.width + left + right, image.height + up + down)
    canvas = Image.new("RGB", size)
    canvas.paste(image, (left, up))
    mask = Image.new("L", size, 255)
    mask.paste(0, (left, up, left + image.width, up + image.height))
    filled = masking.fill(canvas, mask)
    if variation > 0:
        pixels = np.asarray(filled, dtype=np.float32)
        noise = spectral_noise(size, falloff, seed)[..., None] * (variation * 255.0)
        border = (np.asarray(mask) > 0)[..., None]
        pixels = np.where(border, pixels + noise, pixels)
        filled = Image.fromarray(np.clip(pixels.round(), 0, 255).astype(np.uint8), "RGB")
    return filled, mask


def check(pixels, mask_blur, direction, noise_q, color_variation, masked_content) -> tuple:
    """The script's arguments checked and converted; ValueError naming the bad one."""
    try:
        pixels = int(pixels)
    except (TypeError, ValueError):
        raise ValueError(f"Outpainting mk2: pixels to expand must be a whole number, got {pixels!r}") from None
    if not 0 < pixels <= MAX_PIXELS:
        raise ValueError(f"Outpainting mk2: pixels to expand must be between 1 and {MAX_PIXELS}, got {pixels}")
    if not 0 <= float(mask_blur) <= 64:
        raise ValueError(f"Outpainting mk2: mask blur must be between 0 and 64, got {mask_blur!r}")
    if isinstance(direction, str):
        direction = [direction]
    direction = [str(d).lower() for d in (direction or [])]
    unknown = [d for d in direction if d not in DIRECTIONS]
    if unknown:
        raise ValueError(f"Outpainting mk2: unknown direction {', '.join(map(repr, unknown))}; "
                         f"choose from {', '.join(DIRECTIONS)}")
    if not direction:
        raise ValueError("Outpainting mk2: choose at least one outpainting direction (left, right, up, down)")
    if not 0 <= float(color_variation) <= 1:
        raise ValueError(f"Outpainting mk2: color variation must be between 0 and 1, got {color_variation!r}")
    if not 0 <= float(noise_q) <= 4:
        raise ValueError(f"Outpainting mk2: fall-off exponent must be between 0 and 4, got {noise_q!r}")
    if isinstance(masked_content, str):
        if masked_content not in MASKED_CONTENT:
            raise ValueError(f"Outpainting mk2: masked content must be one of {', '.join(MASKED_CONTENT)}, "
                             f"got {masked_content!r}")
        masked_content = MASKED_CONTENT.index(masked_content)
    if masked_content not in range(len(MASKED_CONTENT)):
        raise ValueError(f"Outpainting mk2: masked content must be 0..3 ({', '.join(MASKED_CONTENT)}), "
                         f"got {masked_content!r}")
    return pixels, float(mask_blur), direction, float(noise_q), float(color_variation), int(masked_content)


class OutpaintingMk2(scripts.Script):
    def title(self):
        return "Outpainting mk2"

    def show(self, is_img2img):
        return is_img2img

    def ui(self, is_img2img):
        info = gr.HTML("<p>Recommended settings: Sampling steps 80-100, Euler a, denoising strength 0.8. "
                       "The image is extended on the chosen sides; the generation size is ignored.</p>")
        pixels = gr.Slider(8, 256, value=128, step=8, label="Pixels to expand", elem_id=self.elem_id("pixels"))
        mask_blur = gr.Slider(0, 64, value=8, step=1, label="Mask blur", elem_id=self.elem_id("mask_blur"))
        direction = gr.CheckboxGroup(list(DIRECTIONS), value=list(DIRECTIONS), label="Outpainting direction",
                                     elem_id=self.elem_id("direction"))
        noise_q = gr.Slider(0.0, 4.0, value=1.0, step=0.01, label="Fall-off exponent (lower=higher detail)",
                            elem_id=self.elem_id("noise_q"))
        color_variation = gr.Slider(0.0, 1.0, value=0.05, step=0.01, label="Color variation",
                                    elem_id=self.elem_id("color_variation"))
        masked_content = gr.Radio(list(MASKED_CONTENT), value="original", type="index",
                                  label="Masked content (original = the pre-filled border)",
                                  elem_id=self.elem_id("inpainting_fill"))
        return [info, pixels, mask_blur, direction, noise_q, color_variation, masked_content]

    def run(self, p, _info=None, pixels=128, mask_blur=8, direction=DIRECTIONS, noise_q=1.0, color_variation=0.05,
            masked_content=1):
        from modules import processing
        pixels, mask_blur, direction, noise_q, color_variation, masked_content = check(
            pixels, mask_blur, direction, noise_q, color_variation, masked_content)
        from modules.img2img import flatten

        images = [flatten(image) for image in p.init_images or []]
        if not images:
            raise ValueError("init_images: Outpainting mk2 needs an image to extend")
        if len({image.size for image in images}) > 1:
            raise ValueError("init_images: Outpainting mk2 needs all init images to have the same size")
        grow = expansion(images[0].size, pixels, direction)
        width = images[0].width + grow[0] + grow[1]
        height = images[0].height + grow[2] + grow[3]
        if not (64 <= width <= processing.MAX_SIDE and 64 <= height <= processing.MAX_SIDE):
            raise ValueError(f"Outpainting mk2: the extended image would be {width}x{height}; each side must be "
                             f"between 64 and {processing.MAX_SIDE} (change pixels to expand or the image)")
        processing.fix_seed(p)
        seed = int(p.seed[0] if isinstance(p.seed, (list, tuple)) else p.seed)   # the border noise follows the seed
        canvases = []
        for index, image in enumerate(images):
            canvas, mask = extend(image, grow, noise_q, color_variation, seed=seed + index)
            canvases.append(canvas)
        p.init_images = canvases
        p.mask = mask
        p.width, p.height = width, height
        p.resize_mode = 0
        p.inpaint_full_res = False          # the whole canvas is the picture; "only masked" would crop it
        p.inpainting_mask_invert = 0
        p.inpainting_fill = masked_content
        p.mask_blur_x = p.mask_blur_y = int(round(mask_blur))
        p.extra_generation_params["Outpainting"] = f"{pixels}px {' '.join(d for d in DIRECTIONS if d in direction)}"
        return processing.process_images(p)
