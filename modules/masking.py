"""Inpainting masks: binarise, blur, find the "only masked" crop, fill the masked area, paste results back.

Conventions: a mask is a PIL "L" image the size of the picture it belongs
to, 255 where the picture is repainted and 0 where the original is kept;
after blurring it holds the soft edge in between. All functions are pure.
"""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter, ImageOps

THRESHOLD = 128


def binary_mask(mask: Image.Image) -> Image.Image:
    """A drawn or uploaded mask -> L image of 0/255.

    An image with transparency (a brush layer, a PNG with strokes on a clear
    background) is read from its alpha channel; anything else from its
    brightness (white = repaint).
    """
    mask = ImageOps.exif_transpose(mask)
    if mask.mode == "P":
        mask = mask.convert("RGBA")
    if mask.mode in ("RGBA", "LA", "PA") and mask.getchannel("A").getextrema() != (255, 255):
        gray = mask.getchannel("A")
    else:
        gray = mask.convert("L")
    return gray.point(lambda v: 255 if v >= THRESHOLD else 0)


def blur(mask: Image.Image, blur_x: float, blur_y: float) -> Image.Image:
    """Gaussian blur with separate horizontal/vertical standard deviations (A1111's Mask blur x/y)."""
    if blur_x <= 0 and blur_y <= 0:
        return mask
    return mask.filter(ImageFilter.GaussianBlur(radius=(max(0.0, blur_x), max(0.0, blur_y))))


def crop_region(mask: Image.Image, padding: int) -> tuple[int, int, int, int] | None:
    """Bounding box (x1, y1, x2, y2) of the masked pixels grown by `padding`, inside the image; None if empty."""
    box = mask.getbbox()
    if box is None:
        return None
    x1, y1, x2, y2 = box
    return (max(0, x1 - padding), max(0, y1 - padding), min(mask.width, x2 + padding), min(mask.height, y2 + padding))


def _grow(start: int, end: int, wanted: int, limit: int) -> tuple[int, int]:
    """Grow [start, end) to `wanted` length around its centre, shifted to stay inside [0, limit)."""
    wanted = min(wanted, limit)
    extra = wanted - (end - start)
    if extra <= 0:
        return start, end
    start -= extra // 2
    end += extra - extra // 2
    if start < 0:
        end, start = end - start, 0
    if end > limit:
        start, end = max(0, start - (end - limit)), limit
    return start, end


def expand_to_aspect(box, width: int, height: int, image_w: int, image_h: int) -> tuple[int, int, int, int]:
    """Grow the crop box so its aspect ratio matches the generation size (width x height), staying in the image.

    The crop is later scaled to width x height; matching the ratio first keeps
    the masked area undistorted.
    """
    x1, y1, x2, y2 = box
    box_w, box_h = x2 - x1, y2 - y1
    if box_w * height < box_h * width:           # too narrow: widen
        x1, x2 = _grow(x1, x2, round(box_h * width / height), image_w)
    elif box_w * height > box_h * width:         # too flat: heighten
        y1, y2 = _grow(y1, y2, round(box_w * height / width), image_h)
    return x1, y1, x2, y2


def fill(image: Image.Image, mask: Image.Image) -> Image.Image:
    """Masked content "fill": replace the masked area with colours spread in from its surroundings.

    For a few blur radii, from coarse to fine, the kept pixels and their
    weights are blurred together (a normalised convolution): coarse passes
    reach into the middle of large holes, finer ones restore detail near the
    edge. Kept pixels (mask 0) are unchanged.
    """
    rgb = np.asarray(image.convert("RGB"), dtype=np.float32)
    repaint = np.asarray(mask.convert("L"), dtype=np.float32) / 255.0
    keep = 1.0 - repaint
    if keep.max() <= 0:
        return image.convert("RGB")   # nothing to spread from
    # PIL blurs 8-bit images only (fast, any radius): blur the kept colours premultiplied by their weight
    weights = Image.fromarray((keep * 255).round().astype(np.uint8), "L")
    premultiplied = Image.fromarray((rgb * keep[..., None]).round().astype(np.uint8), "RGB")
    estimate = np.zeros_like(rgb)
    for radius in (256, 64, 16, 4, 2):
        weight = np.asarray(weights.filter(ImageFilter.GaussianBlur(radius)), dtype=np.float32) / 255.0
        colour = np.asarray(premultiplied.filter(ImageFilter.GaussianBlur(radius)), dtype=np.float32)
        valid = weight > 2 / 255
        estimate[valid] = colour[valid] / weight[valid, None]
    out = rgb * keep[..., None] + estimate * repaint[..., None]
    return Image.fromarray(np.clip(out.round(), 0, 255).astype(np.uint8), "RGB")


def overlay_mask(mask: Image.Image) -> Image.Image:
    """The mask used to paste the original back: the blurred mask doubled, so the soft edge sits inside the
    masked area and pixels outside it (mask 0) stay exactly the original."""
    return mask.point(lambda v: min(255, v * 2))


def composite(generated: Image.Image, original: Image.Image, mask: Image.Image) -> Image.Image:
    """Generated pixels where the mask is 255, original ones where it is 0, mixed in between."""
    if generated.size != original.size:
        raise ValueError(f"composite: generated image is {generated.size}, original {original.size}")
    return Image.composite(generated.convert("RGB"), original.convert("RGB"), mask.convert("L"))
