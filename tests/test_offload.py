"""--medvram / --lowvram offload hooks (modules/offload.py).

The GPU is where they save memory; here they run with the CPU as the
execution device, which checks the wiring: every part gets a hook, the ring
of hooks does not change the image, LoRA-style in-place weight edits still
reach the network, and the flags are ignored with a warning on CPU.
"""
from __future__ import annotations

import argparse
import logging

import pytest
import torch

from modules import devices, offload, processing
from tests.factories import make_tiny_checkpoint


def _txt2img(model, seed=5):
    p = processing.StableDiffusionProcessingTxt2Img(prompt="a red circle", negative_prompt="", seed=seed, steps=3,
                                                    cfg_scale=5.0, width=64, height=64, sampler_name="Euler",
                                                    do_not_save_samples=True)
    p.sd_model = model
    return processing.process_images(p).images[0]


@pytest.fixture()
def fresh_model(tmp_path):
    from modules import sd_models

    path = make_tiny_checkpoint(tmp_path, "sd1")
    return sd_models.load_model(str(path), torch.device("cpu"), torch.float32)


@pytest.mark.parametrize("mode,min_parts", [("model", 3), ("blocks", 8)])
def test_offload_hooks_cover_every_part_and_keep_the_image(fresh_model, mode, min_parts):
    import numpy as np

    before = np.asarray(_txt2img(fresh_model))
    hooks = offload.apply(fresh_model, mode, "cpu")
    assert len(hooks) >= min_parts
    assert hooks[0].hook.prev_module_hook is hooks[-1], "the chain is a ring"
    hooked = {id(h.model) for h in hooks}
    assert id(fresh_model.text_encoders[0]) in hooked
    if mode == "model":
        assert {id(fresh_model.unet), id(fresh_model.vae)} <= hooked
    else:
        assert id(fresh_model.unet.down_blocks[0]) in hooked and id(fresh_model.vae.decoder) in hooked
    after = np.asarray(_txt2img(fresh_model))
    assert np.array_equal(before, after)


def test_weights_stay_real_tensors_so_in_place_edits_still_apply(fresh_model):
    import numpy as np

    offload.apply(fresh_model, "blocks", "cpu")
    weight = fresh_model.unet.conv_out.weight
    assert weight.device.type == "cpu" and not weight.is_meta
    before = np.asarray(_txt2img(fresh_model))
    with torch.no_grad():
        weight.mul_(3.0)        # what a LoRA patch does to a layer
    assert not np.array_equal(before, np.asarray(_txt2img(fresh_model)))


def test_unload_removes_the_hooks(fresh_model):
    offload.apply(fresh_model, "model", "cpu")
    unet = fresh_model.unet
    fresh_model.unload()
    assert not hasattr(unet, "_hf_hook")


def test_unknown_mode_is_refused(fresh_model):
    with pytest.raises(ValueError, match="offload mode 'fast'"):
        offload.apply(fresh_model, "fast", "cpu")


def test_flags_pick_the_mode_and_are_ignored_on_cpu(caplog):
    assert offload.mode_from_flags(argparse.Namespace(lowvram=True, medvram=True)) == "blocks"
    assert offload.mode_from_flags(argparse.Namespace(medvram=True)) == "model"
    assert offload.mode_from_flags(argparse.Namespace()) == "none"
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the flags apply")
    with caplog.at_level(logging.WARNING):
        choice = devices.choose(argparse.Namespace(medvram=True))
    assert choice.offload == "none" and "--medvram/--lowvram ignored" in caplog.text


def test_bf16_on_a_cpu_that_emulates_it_is_honoured_with_a_warning(caplog, monkeypatch):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: bf16 is a CPU setting")
    for native, warned in ((False, True), (True, False)):
        monkeypatch.setattr(devices, "native_bf16", lambda device, v=native: v)
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            choice = devices.choose(argparse.Namespace(), precision_setting="bf16")
        assert choice.dtype == torch.bfloat16
        assert ("torch emulates bf16" in caplog.text) == warned
