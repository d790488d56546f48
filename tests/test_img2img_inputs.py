"""Awkward init images for img2img and inpaint: sizes that are not multiples of 8, alpha, EXIF orientation,
palette images, as they arrive from the page or the API."""
from __future__ import annotations

import base64
import io

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from modules import img2img, masking, processing
from modules.api import image_input

torch.set_num_threads(1)


def rotated_png(image: Image.Image, orientation: int = 6) -> Image.Image:
    """`image` stored with an EXIF orientation tag, re-opened as a decoder would give it."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    buffer = io.BytesIO()
    image.save(buffer, "PNG", exif=exif)
    return Image.open(io.BytesIO(buffer.getvalue()))


def run(model, **fields):
    fields.setdefault("width", 64)
    fields.setdefault("height", 64)
    return processing.process_images(processing.StableDiffusionProcessingImg2Img(
        sd_model=model, prompt="x", steps=2, seed=1, sampler_name="Euler", do_not_save_samples=True, **fields))


def test_inpaint_with_exif_rotated_odd_sized_image_keeps_its_unmasked_pixels(sd1_model):
    stored = Image.fromarray(np.random.default_rng(0).integers(0, 255, (50, 30, 3), dtype=np.uint8))  # 30x50
    loaded = rotated_png(stored)                          # shown (and generated) as 50 wide, 30 high
    mask = Image.new("L", (50, 30), 0)                    # drawn on the picture as the user sees it
    ImageDraw.Draw(mask).rectangle((10, 5, 25, 20), fill=255)
    result = run(sd1_model, init_images=[loaded], mask=mask, mask_blur=0, inpaint_full_res=False,
                 denoising_strength=0.9, inpainting_fill=1, width=104, height=64)
    out = np.asarray(result.images[0])
    assert result.images[0].size == (104, 64)
    expected = np.asarray(img2img.resize_image(0, img2img.flatten(loaded), 104, 64))
    keep = np.asarray(masking.overlay_mask(img2img.resize_image(0, mask, 104, 64))) == 0
    assert keep.sum() > 104 * 64 // 2
    assert np.array_equal(out[keep], expected[keep])


def test_inpaint_only_masked_with_a_size_that_is_not_a_multiple_of_8(sd1_model):
    init = Image.new("RGB", (37, 45), (40, 160, 60))
    mask = Image.new("L", (37, 45), 0)
    ImageDraw.Draw(mask).rectangle((12, 12, 24, 30), fill=255)
    result = run(sd1_model, init_images=[init], mask=mask, mask_blur=2, inpaint_full_res=True,
                 inpaint_full_res_padding=4, denoising_strength=0.8, inpainting_fill=1)
    out = result.images[0]
    assert out.size == (37, 45)                          # "only masked" pastes into the full picture
    assert out.getpixel((1, 1)) == (40, 160, 60) and out.getpixel((35, 43)) == (40, 160, 60)


def test_transparent_and_palette_images_are_flattened_onto_white(sd1_model):
    rgba = Image.new("RGBA", (40, 24), (200, 0, 0, 0))
    rgba.paste((200, 0, 0, 255), (20, 0, 40, 24))        # right half opaque red, left half transparent
    palette = rgba.convert("RGB").convert("P", palette=Image.ADAPTIVE)
    for image in (rgba, palette):
        out = run(sd1_model, init_images=[image], denoising_strength=0.0, width=80, height=64).images[0]
        assert out.mode == "RGB" and out.size == (80, 64)
    out = run(sd1_model, init_images=[rgba], denoising_strength=0.0, width=80, height=64).images[0]
    assert out.getpixel((5, 30)) == (255, 255, 255) and out.getpixel((75, 30)) == (200, 0, 0)


@pytest.mark.parametrize("orientation, size", [(3, (30, 20)), (6, (20, 30)), (8, (20, 30))])
def test_api_images_keep_their_exif_orientation_until_flattened(orientation, size):
    picture = Image.new("RGB", (30, 20), (0, 0, 255))
    picture.paste((255, 0, 0), (0, 0, 10, 20))           # a red band on the left of the stored pixels
    buffer = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = orientation
    picture.save(buffer, "PNG", exif=exif)
    decoded = image_input.decode_image("init_images[0]", base64.b64encode(buffer.getvalue()).decode())
    flat = img2img.flatten(decoded)
    assert flat.size == size and flat.mode == "RGB"
    red = np.asarray(flat)[..., 0] > 200
    assert red.sum() == 10 * 20                            # the band survives rotation, only moved
