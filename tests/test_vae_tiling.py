"""VAE tiled decode: the vae_tiling setting picks diffusers' tiles for large latents, and seams stay close to a whole decode."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from benchmarks.bench_vae import seam_diffs, seam_mask
from modules import options, previews, shared
from tests.factories import make_tiny_components

torch.set_num_threads(1)

# The tiny VAE: sample_size 64, spatial factor 2, so one tile is 32x32 latent -> 64x64 pixels.
LARGE = (1, 4, 144, 144)     # 144*144 > 128*128: "Auto" tiles it
SMALL = (1, 4, 32, 32)       # one tile


@pytest.fixture(scope="module")
def model():
    vae = make_tiny_components("sd1")["vae"]
    return SimpleNamespace(vae=vae, device=torch.device("cpu"), vae_scaling_factor=vae.config.scaling_factor)


def latents(shape, seed=1):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def whole_decode(model, z):
    model.vae.disable_tiling()
    with torch.inference_mode():
        return model.vae.decode(z / model.vae_scaling_factor).sample


def tiled_decode(model, z):
    with torch.inference_mode():
        return model.vae.tiled_decode(z / model.vae_scaling_factor).sample


def test_auto_decodes_a_large_latent_in_tiles(model):
    z = latents(LARGE)
    out = previews.decode_latents(model, z, "Auto")
    assert out.shape == (1, 3, 288, 288)
    assert torch.equal(out, tiled_decode(model, z))
    assert not torch.equal(out, whole_decode(model, z))   # tiles really were used (per-tile group norms differ)


def test_auto_decodes_a_small_latent_whole(model):
    z = latents((1, 4, 48, 48))     # larger than one tile, below the Auto threshold
    assert torch.equal(previews.decode_latents(model, z, "Auto"), whole_decode(model, z))


def test_off_decodes_a_large_latent_whole_and_on_tiles_a_medium_one(model):
    z = latents(LARGE)
    assert torch.equal(previews.decode_latents(model, z, "Off"), whole_decode(model, z))
    medium = latents((1, 4, 80, 80))
    assert torch.equal(previews.decode_latents(model, medium, "On"), tiled_decode(model, medium))


def test_on_with_a_latent_of_one_tile_is_the_whole_decode(model):
    z = latents(SMALL)
    assert torch.equal(previews.decode_latents(model, z, "On"), whole_decode(model, z))


def test_tile_borders_stay_close_to_the_whole_decode(model):
    z = latents((1, 4, 80, 80))
    whole = whole_decode(model, z)
    tiled = previews.decode_latents(model, z, "On")
    assert seam_mask(model.vae, 160, 160).any()
    at_seams, elsewhere = seam_diffs(model.vae, whole, tiled)
    print(f"tiny VAE 160x160: max |tiled - whole| at seams {at_seams:.4f}, elsewhere {elsewhere:.4f}, "
          f"output range {float(whole.min()):.2f}..{float(whole.max()):.2f}")
    # Blending keeps the borders as close as the tile interiors; a misplaced or unblended tile is off by O(1).
    assert at_seams < 0.5
    assert at_seams <= 2 * elsewhere + 0.05


def test_decode_latents_follows_the_setting(model, monkeypatch):
    opts = options.Options()
    monkeypatch.setattr(shared, "opts", opts)
    z = latents(LARGE)
    assert opts.vae_tiling == "Auto"
    assert torch.equal(previews.decode_latents(model, z), tiled_decode(model, z))
    opts.set("vae_tiling", "Off")
    assert torch.equal(previews.decode_latents(model, z), whole_decode(model, z))


def test_bad_tiling_values_are_refused_by_name(model):
    with pytest.raises(ValueError, match="vae_tiling"):
        options.Options().set("vae_tiling", "Sometimes")
    with pytest.raises(ValueError, match="vae_tiling.*'sometimes'"):
        previews.decode_latents(model, latents(SMALL), "sometimes")


def test_decode_turns_the_vae_channels_last_once_and_keeps_the_pixels():
    import copy

    vae = make_tiny_components("sd1")["vae"]
    reference_vae = copy.deepcopy(vae)
    fresh = SimpleNamespace(vae=vae, device=torch.device("cpu"), vae_scaling_factor=vae.config.scaling_factor)
    z = latents(SMALL)
    with torch.inference_mode():
        reference = reference_vae.decode(z / fresh.vae_scaling_factor).sample
    out = previews.decode_latents(fresh, z, "Off")
    assert vae.decoder.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    assert out.is_contiguous() and (out - reference).abs().max().item() < 1e-5


def test_an_offloaded_vae_keeps_its_weights_as_they_are():
    vae = make_tiny_components("sd1")["vae"]
    assert previews.use_channels_last(vae, offloaded=True) is False
    assert not vae.decoder.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
