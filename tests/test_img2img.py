"""img2img and inpainting on tiny random models: strength, resize modes, masks, inpainting checkpoints."""
from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from modules import img2img, masking, processing
from tests.factories import make_tiny_checkpoint

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def inpaint_model(tmp_path_factory):
    from modules import sd_models

    path = make_tiny_checkpoint(tmp_path_factory.mktemp("ckpt"), "sd1-inpaint")
    return sd_models.load_model(str(path), torch.device("cpu"), torch.float32)


def picture(size=(64, 64)) -> Image.Image:
    image = Image.new("RGB", size, (30, 90, 200))
    ImageDraw.Draw(image).ellipse((8, 8, size[0] - 8, size[1] - 8), fill=(220, 40, 40))
    return image


def square_mask(size=(64, 64), box=(20, 20, 44, 44)) -> Image.Image:
    mask = Image.new("L", size, 0)
    ImageDraw.Draw(mask).rectangle(box, fill=255)
    return mask


def run(model, **fields):
    fields.setdefault("init_images", [picture()])
    fields.setdefault("width", 64)
    fields.setdefault("height", 64)
    fields.setdefault("steps", 4)
    fields.setdefault("seed", 3)
    fields.setdefault("prompt", "a blue circle")
    fields.setdefault("do_not_save_samples", True)
    return processing.process_images(processing.StableDiffusionProcessingImg2Img(sd_model=model, **fields))


def test_a1111_name_and_kind():
    p = processing.StableDiffusionProcessingImg2Img(init_images=[picture()])
    assert p.is_img2img and p.outdir_kind == "img2img-images"
    assert p.denoising_strength == 0.75


def test_denoising_zero_returns_init_image_unchanged(sd1_model):
    init = picture()
    result = run(sd1_model, init_images=[init], denoising_strength=0.0)
    assert result.images[0].tobytes() == init.tobytes()


def test_denoising_one_ignores_the_init_image(sd1_model):
    """Strength 1 starts from pure noise: the same latents as txt2img with the seed."""
    a = run(sd1_model, init_images=[picture()], denoising_strength=1.0, sampler_name="Euler")
    b = run(sd1_model, init_images=[Image.new("RGB", (64, 64), "white")], denoising_strength=1.0, sampler_name="Euler")
    txt = processing.process_images(processing.StableDiffusionProcessingTxt2Img(
        sd_model=sd1_model, prompt="a blue circle", seed=3, steps=4, width=64, height=64, sampler_name="Euler",
        do_not_save_samples=True))
    assert torch.allclose(a.latents[0], b.latents[0], atol=1e-5)
    assert torch.allclose(a.latents[0], txt.latents[0], atol=1e-4)


def test_partial_strength_runs_the_tail_of_the_schedule(sd1_model, monkeypatch):
    from modules import jobs

    state = jobs.JobState()
    monkeypatch.setattr(jobs, "current_state", lambda: state)
    low = run(sd1_model, denoising_strength=0.25, steps=8, sampler_name="Euler")
    assert state.sampling_steps == 2       # int(8 * 0.25) steps shown, as A1111
    high = run(sd1_model, denoising_strength=0.75, steps=8, sampler_name="Euler")
    init = img2img.encode_images(sd1_model, [picture()])[0]
    # a weaker strength stays closer to the init latent
    assert (low.latents[0] - init).abs().mean() < (high.latents[0] - init).abs().mean()
    assert "Denoising strength: 0.25" in low.infotexts[0]
    assert low.images[0].size == (64, 64)


@pytest.mark.parametrize("sampler", ["Euler a", "DPM++ 2M", "DDIM", "Heun", "UniPC", "LMS"])
def test_strength_works_with_common_samplers(sd1_model, sampler):
    result = run(sd1_model, denoising_strength=0.5, sampler_name=sampler, steps=4)
    assert torch.isfinite(result.latents[0]).all()


def test_same_seed_same_image_and_seed_matters(sd1_model):
    a = run(sd1_model, seed=11, denoising_strength=0.6)
    b = run(sd1_model, seed=11, denoising_strength=0.6)
    c = run(sd1_model, seed=12, denoising_strength=0.6)
    assert a.images[0].tobytes() == b.images[0].tobytes()
    assert a.images[0].tobytes() != c.images[0].tobytes()


@pytest.mark.parametrize("mode", [0, 1, 2, 3])
def test_resize_modes_give_the_requested_size(sd1_model, mode):
    result = run(sd1_model, init_images=[picture((50, 37))], resize_mode=mode, width=80, height=64,
                 denoising_strength=0.5)
    assert result.images[0].size == (80, 64)


def test_resize_image_modes():
    wide = picture((80, 40))
    assert img2img.resize_image(1, wide, 40, 40).size == (40, 40)
    filled = img2img.resize_image(2, wide, 40, 40)
    assert filled.size == (40, 40)
    # the bands above and below repeat the picture's edge rows
    array = np.asarray(filled)
    assert (array[0] == array[10]).all()


def test_odd_size_rgba_and_exif_rotation_are_handled(sd1_model):
    image = Image.new("RGBA", (30, 50), (0, 0, 0, 0))   # transparent: flattened onto white
    exif = Image.Exif()
    exif[0x0112] = 6                                   # rotate 90: the picture is 50 wide, 30 high
    buffer = io.BytesIO()
    image.save(buffer, "PNG", exif=exif)
    loaded = Image.open(buffer)
    flat = img2img.flatten(loaded)
    assert flat.size == (50, 30) and flat.mode == "RGB" and flat.getpixel((3, 3)) == (255, 255, 255)
    result = run(sd1_model, init_images=[loaded], width=80, height=64, denoising_strength=0.0)
    assert result.images[0].size == (80, 64)
    assert result.images[0].getpixel((5, 5)) == (255, 255, 255)


def unmasked(image: Image.Image, mask: Image.Image) -> np.ndarray:
    return np.asarray(image)[np.asarray(mask) == 0]


@pytest.mark.parametrize("blur", [0, 4])
def test_inpaint_keeps_unmasked_pixels_identical(sd1_model, blur):
    init, mask = picture(), square_mask()
    result = run(sd1_model, init_images=[init], mask=mask, mask_blur=blur, inpaint_full_res=False,
                 denoising_strength=0.9, inpainting_fill=1)
    blurred = masking.blur(mask, blur, blur)
    assert (unmasked(result.images[0], blurred) == unmasked(init, blurred)).all()
    inside = np.asarray(result.images[0])[28:36, 28:36]
    assert not (inside == np.asarray(init)[28:36, 28:36]).all()
    assert "Mask blur: " in result.infotexts[0] or blur == 0


def test_latent_blending_keeps_unmasked_latents_at_init(sd1_model):
    init, mask = picture(), square_mask(box=(24, 24, 47, 47))
    result = run(sd1_model, init_images=[init], mask=mask, mask_blur=0, inpaint_full_res=False,
                 denoising_strength=0.8, inpainting_fill=1, sampler_name="Euler a")
    init_latent = img2img.encode_images(sd1_model, [init])[0]
    keep = torch.ones(32, 32, dtype=torch.bool)
    keep[12:24, 12:24] = False                       # the mask in latent cells (factor 2)
    assert torch.allclose(result.latents[0][:, keep], init_latent[:, keep], atol=1e-4)
    assert not torch.allclose(result.latents[0][:, ~keep], init_latent[:, ~keep], atol=1e-2)


def test_inverted_mask_repaints_the_outside(sd1_model):
    init, mask = picture(), square_mask()
    result = run(sd1_model, init_images=[init], mask=mask, mask_blur=0, inpaint_full_res=False,
                 inpainting_mask_invert=1, denoising_strength=0.9)
    inside = np.asarray(mask) == 255
    assert (np.asarray(result.images[0])[inside] == np.asarray(init)[inside]).all()
    assert "Mask mode: Inpaint not masked" in result.infotexts[0]


@pytest.mark.parametrize("fill", [0, 1, 2, 3])
def test_masked_content_modes(sd1_model, fill):
    init, mask = picture(), square_mask()
    result = run(sd1_model, init_images=[init], mask=mask, mask_blur=0, inpaint_full_res=False,
                 inpainting_fill=fill, denoising_strength=0.8)
    assert (unmasked(result.images[0], mask) == unmasked(init, mask)).all()
    assert f"Masked content: {img2img.INPAINTING_FILL[fill]}" in result.infotexts[0]


def test_fill_spreads_surrounding_colour_into_the_hole():
    image = Image.new("RGB", (64, 64), (0, 200, 0))
    ImageDraw.Draw(image).rectangle((20, 20, 44, 44), fill=(255, 0, 0))
    filled = masking.fill(image, square_mask())
    assert filled.getpixel((32, 32))[1] > 150 and filled.getpixel((32, 32))[0] < 60
    assert filled.getpixel((2, 2)) == (0, 200, 0)


def test_only_masked_keeps_full_size_and_outside_of_crop(sd1_model):
    init = picture((96, 80))
    mask = square_mask((96, 80), (40, 30, 56, 46))
    result = run(sd1_model, init_images=[init], mask=mask, mask_blur=2, inpaint_full_res=True,
                 inpaint_full_res_padding=4, width=64, height=64, denoising_strength=0.9)
    out = result.images[0]
    assert out.size == (96, 80)                       # the whole picture comes back
    blurred = masking.blur(mask, 2, 2)
    assert (unmasked(out, blurred) == unmasked(init, blurred)).all()
    assert "Inpaint area: Only masked" in result.infotexts[0]
    assert "Masked area padding: 4" in result.infotexts[0]


def test_crop_region_matches_aspect_and_stays_inside():
    box = masking.crop_region(square_mask((100, 100), (10, 40, 20, 60)), 5)
    assert box == (5, 35, 26, 66)
    x1, y1, x2, y2 = masking.expand_to_aspect(box, 64, 32, 100, 100)
    assert (x2 - x1) == 2 * (y2 - y1) and x1 >= 0 and x2 <= 100
    assert masking.crop_region(Image.new("L", (8, 8)), 4) is None


def test_mask_of_another_size_is_stretched_to_the_image(sd1_model):
    init = picture()
    small_mask = square_mask((32, 32), (10, 10, 22, 22))
    result = run(sd1_model, init_images=[init], mask=small_mask, mask_blur=0, inpaint_full_res=False,
                 denoising_strength=0.9)
    big = small_mask.resize((64, 64), Image.NEAREST)
    assert (unmasked(result.images[0], big) == unmasked(init, big)).all()


def test_transparent_brush_layer_is_a_mask():
    layer = Image.new("RGBA", (16, 16), (0, 0, 0, 0))
    ImageDraw.Draw(layer).rectangle((4, 4, 8, 8), fill=(255, 0, 0, 255))
    mask = masking.binary_mask(layer)
    assert mask.getpixel((6, 6)) == 255 and mask.getpixel((0, 0)) == 0


def test_inpainting_checkpoint_runs_with_nine_channel_input(inpaint_model):
    assert inpaint_model.unet.config.in_channels == 9
    init, mask = picture(), square_mask()
    result = run(inpaint_model, init_images=[init], mask=mask, mask_blur=0, inpaint_full_res=False,
                 denoising_strength=1.0)
    assert (unmasked(result.images[0], mask) == unmasked(init, mask)).all()
    plain = run(inpaint_model, init_images=[init], denoising_strength=0.6)
    assert plain.images[0].size == (64, 64)
    txt = processing.process_images(processing.StableDiffusionProcessingTxt2Img(
        sd_model=inpaint_model, prompt="x", steps=2, width=64, height=64, do_not_save_samples=True))
    assert txt.images[0].size == (64, 64)


def test_inpainting_conditioning_layout(inpaint_model):
    mask = torch.zeros(64, 64)
    mask[:32] = 1
    cond = img2img.inpainting_conditioning(inpaint_model, [picture()], mask)
    assert cond.shape == (1, 5, 32, 32)
    assert cond[0, 0, :16].eq(1).all() and cond[0, 0, 16:].eq(0).all()


def test_batch_image_equals_single(sd1_model):
    batch = run(sd1_model, seed=5, batch_size=2, denoising_strength=0.5)
    single = run(sd1_model, seed=6, denoising_strength=0.5)
    # batched and single U-Net calls round differently (as in test_processing): up to 1.75e-5 on an
    # AMD EPYC with AVX2 only, where 1e-5 failed; another seed differs by about 3.9
    assert (batch.latents[1] - single.latents[0]).abs().max().item() < 1e-4


def test_bad_fields_name_the_field(sd1_model):
    with pytest.raises(ValueError, match="denoising_strength"):
        run(sd1_model, denoising_strength=1.5)
    with pytest.raises(ValueError, match="init_images"):
        run(sd1_model, init_images=[])
    with pytest.raises(ValueError, match="resize_mode"):
        run(sd1_model, resize_mode=7)
    with pytest.raises(ValueError, match="inpainting_fill"):
        run(sd1_model, inpainting_fill=9)
    with pytest.raises(ValueError, match="mask_blur_x"):
        run(sd1_model, mask_blur=500)


DEMO = __import__("pathlib").Path(__file__).resolve().parent.parent / "models" / "Stable-diffusion" / "easel-demo.safetensors"


@pytest.mark.skipif(not DEMO.exists(), reason="needs the trained demo model models/Stable-diffusion/easel-demo.safetensors")
def test_demo_model_recolours_a_red_circle_in_place():
    """Meaning: img2img of a red circle with `a blue circle` at 0.6 turns it blue and keeps it where it was."""
    from modules import sd_models
    from training import judge

    model = sd_models.load_model(str(DEMO), torch.device("cpu"), torch.float32)
    size = model.family.native_size
    init = Image.new("RGB", (size, size), (255, 255, 255))
    r = size // 5
    ImageDraw.Draw(init).ellipse((size // 2 - r, size // 2 - r, size // 2 + r, size // 2 + r), fill=(220, 30, 30))
    before = judge.read_image(init.resize((64, 64))).main
    wins = 0
    for seed in (1, 2, 3):
        result = run(model, init_images=[init], prompt="a blue circle", width=size, height=size, steps=20,
                     seed=seed, denoising_strength=0.6, sampler_name="Euler a")
        after = judge.read_image(result.images[0].resize((64, 64))).main
        moved = abs(after.centre[0] - before.centre[0]) + abs(after.centre[1] - before.centre[1]) if after else 99
        wins += after is not None and after.colour == "blue" and moved < 8
    assert wins >= 2
