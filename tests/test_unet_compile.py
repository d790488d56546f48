"""The optional torch.compile of the U-Net (setting `unet_compile`): same outputs, and never stale weights.

Frozen weights are folded into the compiled graph, so the one thing that can go
wrong for a user is a LoRA merged after the compile being silently ignored.
These tests edit weights in place exactly as modules/lora.py does and check
that the compiled U-Net follows.
"""
from __future__ import annotations

import types

import numpy as np
import pytest
import torch

from modules import model_families, options, processing, shared, unet_compile
from tests import factories


@pytest.fixture(scope="module", autouse=True)
def inductor_cache(tmp_path_factory):
    """Compiled graphs go to a scratch folder, not the repository's cache/."""
    mp = pytest.MonkeyPatch()
    mp.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path_factory.mktemp("inductor")))
    yield
    mp.undo()


@pytest.fixture(scope="module")
def unet():
    torch.manual_seed(0)
    return factories.tiny_unet(model_families.get_family("sd1"), cross_attention_dim=factories.TEXT_WIDTH).requires_grad_(False)


def _inputs():
    g = torch.Generator().manual_seed(1)
    return (torch.randn(2, 4, 16, 16, generator=g), torch.tensor(500),
            torch.randn(2, 77, factories.TEXT_WIDTH, generator=g))


def _run(call, x, t, cond):
    with torch.inference_mode():
        return call(x, t, encoder_hidden_states=cond, return_dict=False)[0]


def test_the_setting_offers_exactly_the_modes_the_module_knows():
    choices = options.default_options()["unet_compile"].component_args["choices"]
    assert tuple(choices) == unet_compile.MODES
    with pytest.raises(ValueError, match="unet_compile: must be one of"):
        unet_compile.unet_for_sampling(torch.nn.Linear(1, 1), "fast")


def test_off_and_offloaded_models_run_the_module_itself(unet):
    assert unet_compile.unet_for_sampling(unet, "Off") is unet
    assert unet_compile.unet_for_sampling(unet, unet_compile.FROZEN, offloaded=True) is unet


def test_frozen_weights_recompile_after_a_lora_style_in_place_edit(unet):
    x, t, cond = _inputs()
    compiled = unet_compile.unet_for_sampling(unet, unet_compile.FROZEN)
    assert compiled is not unet
    torch.testing.assert_close(_run(compiled, x, t, cond), _run(unet, x, t, cond), atol=2e-4, rtol=1e-3)
    assert unet_compile.unet_for_sampling(unet, unet_compile.FROZEN) is compiled  # same weights: reused

    weight = unet.conv_out.weight
    original = weight.detach().clone()
    try:
        with torch.no_grad():
            weight.add_(0.05)                       # what AppliedNetworks._merge does
        eager = _run(unet, x, t, cond)
        recompiled = unet_compile.unet_for_sampling(unet, unet_compile.FROZEN)
        assert recompiled is not compiled
        torch.testing.assert_close(_run(recompiled, x, t, cond), eager, atol=2e-4, rtol=1e-3)
    finally:
        with torch.no_grad():
            weight.copy_(original)                  # what AppliedNetworks.restore does
    restored = unet_compile.unet_for_sampling(unet, unet_compile.FROZEN)
    torch.testing.assert_close(_run(restored, x, t, cond), _run(unet, x, t, cond), atol=2e-4, rtol=1e-3)


@pytest.mark.parametrize("mode", ["Inductor", unet_compile.CUDA_GRAPHS])   # CUDA graphs: plain Inductor on CPU
def test_plain_inductor_reads_live_weights_without_recompiling(unet, mode):
    x, t, cond = _inputs()
    compiled = unet_compile.unet_for_sampling(unet, mode)
    before = _run(compiled, x, t, cond)
    weight = unet.conv_out.bias
    original = weight.detach().clone()
    try:
        with torch.no_grad():
            weight.add_(1.0)
        assert unet_compile.unet_for_sampling(unet, mode) is compiled
        after = _run(compiled, x, t, cond)
        torch.testing.assert_close(after, before + 1.0, atol=2e-4, rtol=1e-3)
    finally:
        with torch.no_grad():
            weight.copy_(original)


def test_txt2img_with_frozen_weights_compiles_once_and_makes_the_same_image(sd1_model, monkeypatch):
    compiles = []
    real_compile = unet_compile._compile
    monkeypatch.setattr(unet_compile, "_compile", lambda unet, mode: compiles.append(mode) or real_compile(unet, mode))

    def image(mode):
        monkeypatch.setattr(shared, "opts", types.SimpleNamespace(unet_compile=mode))
        p = processing.StableDiffusionProcessingTxt2Img(
            sd_model=sd1_model, prompt="a red circle", seed=3, steps=3, width=64, height=64,
            do_not_save_samples=True, do_not_save_grid=True)
        return np.asarray(processing.process_images(p).images[0], dtype=np.int16)

    eager = image("Off")
    compiled = image(unet_compile.FROZEN)
    again = image(unet_compile.FROZEN)
    assert compiles == [unet_compile.FROZEN]           # the second image reused the compiled U-Net
    assert np.abs(compiled - eager).max() <= 2
    assert np.array_equal(compiled, again)
