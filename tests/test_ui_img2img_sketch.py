"""The Sketch and Inpaint sketch sub-tabs: what the user drew becomes the init image (and, for inpaint sketch,
the mask) that processing gets."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from modules import processing
from modules.ui import img2img as img2img_tab

torch.set_num_threads(1)
RED = (229, 57, 53)


def editor_value(stroke_box=(10, 10, 30, 30), colour=RED):
    """A gr.ImageEditor value as the page sends it: a blue picture and one brush layer with a red stroke."""
    background = Image.new("RGBA", (64, 64), (30, 60, 200, 255))
    layer = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    if stroke_box is not None:
        ImageDraw.Draw(layer).rectangle(stroke_box, fill=colour + (255,))
    return {"background": background, "layers": [layer], "composite": None}


def build(mode, **changes):
    values = dict(mode=mode, init_image=None, sketch=None, upload_image=None, upload_mask=None, prompt="a cat",
                  negative_prompt="", sampler_name="Euler", scheduler="Automatic", steps=2, cfg_scale=7.0, width=64,
                  height=64, batch_count=1, batch_size=1, seed=3, denoising_strength=0.0, resize_mode=0,
                  mask_blur=0, mask_mode=0, inpainting_fill=1, inpaint_area=0, padding=32)
    values.update(changes)
    return img2img_tab.build_processing(**values)


def test_sketch_strokes_are_drawn_into_the_init_image(sd1_model):
    p = build("sketch", sketch_color=editor_value())
    init = p.init_images[0].convert("RGB")
    assert init.getpixel((20, 20)) == RED and init.getpixel((50, 50)) == (30, 60, 200)
    assert p.mask is None                      # plain img2img: the whole picture is generated
    p.sd_model, p.do_not_save_samples = sd1_model, True
    out = processing.process_images(p).images[0]   # strength 0: the init image itself comes back
    assert out.getpixel((20, 20)) == RED and out.getpixel((50, 50)) == (30, 60, 200)


def test_sketch_without_an_image_is_a_clear_error():
    with pytest.raises(ValueError, match="init_images: upload an image first"):
        build("sketch", sketch_color=None)


def test_inpaint_sketch_strokes_are_the_colour_and_the_mask():
    p = build("inpaint_sketch", inpaint_color_sketch=editor_value())
    mask = np.asarray(p.mask)
    assert mask[20, 20] == 255 and mask[50, 50] == 0 and (mask > 0).sum() == 21 * 21
    assert p.init_images[0].convert("RGB").getpixel((20, 20)) == RED


def test_inpaint_sketch_mask_transparency_lets_the_original_show_through():
    p = build("inpaint_sketch", inpaint_color_sketch=editor_value(), mask_alpha=50)
    r, g, b = p.init_images[0].convert("RGB").getpixel((20, 20))
    assert abs(r - (229 + 30) / 2) <= 2 and abs(b - (53 + 200) / 2) <= 2
    assert np.asarray(p.mask)[20, 20] == 255   # the mask stays whole


def test_inpaint_sketch_keeps_pixels_outside_the_strokes(sd1_model):
    p = build("inpaint_sketch", inpaint_color_sketch=editor_value(), denoising_strength=0.9)
    p.sd_model, p.do_not_save_samples = sd1_model, True
    out = np.asarray(processing.process_images(p).images[0])
    keep = np.asarray(p.mask) == 0
    assert np.array_equal(out[keep], np.full((keep.sum(), 3), (30, 60, 200)))


def test_inpaint_sketch_without_strokes_asks_for_them():
    with pytest.raises(ValueError, match="mask: draw coloured strokes"):
        build("inpaint_sketch", inpaint_color_sketch=editor_value(stroke_box=None))
