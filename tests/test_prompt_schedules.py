"""Prompt editing, alternation and AND in the sampling loop, on tiny random models."""
from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings, strategies as st

from modules import processing, prompt_schedules, sampling, text_encoding
from tests.factories import make_tiny_checkpoint

torch.set_num_threads(1)


def txt2img(model, **fields):
    fields.setdefault("width", 64)
    fields.setdefault("height", 64)
    fields.setdefault("steps", 4)
    fields.setdefault("seed", 5)
    fields.setdefault("sampler_name", "Euler")
    fields.setdefault("do_not_save_samples", True)
    return processing.StableDiffusionProcessingTxt2Img(sd_model=model, **fields)


def latents(model, prompt, **fields):
    return processing.process_images(txt2img(model, prompt=prompt, **fields)).latents[0]


@pytest.fixture
def encode_calls(monkeypatch):
    """Every text the job sends to the text encoder."""
    calls = []
    original = text_encoding.encode_prompts

    def counting(model, prompts, *args, **kwargs):
        calls.extend(prompts)
        return original(model, prompts, *args, **kwargs)

    monkeypatch.setattr(text_encoding, "encode_prompts", counting)
    return calls


def test_prompt_editing_switches_conditioning_during_sampling(sd1_model, encode_calls):
    cat, dog = latents(sd1_model, "a cat"), latents(sd1_model, "a dog")
    encode_calls.clear()
    edited = latents(sd1_model, "a [cat:dog:2]")
    assert sorted(encode_calls) == ["", "a cat", "a dog"]          # each text once
    assert (edited - cat).abs().max() > 1e-3 and (edited - dog).abs().max() > 1e-3
    # `when` past the last step: the first text throughout, identical to writing it
    assert torch.allclose(latents(sd1_model, "a [cat:dog:9]"), cat, atol=1e-6)


def test_alternation_uses_both_texts(sd1_model, encode_calls):
    mixed = latents(sd1_model, "a [cat|dog]")
    assert sorted(set(encode_calls)) == ["", "a cat", "a dog"]
    assert (mixed - latents(sd1_model, "a cat")).abs().max() > 1e-3


def test_and_adds_guidance_of_each_sub_prompt(sd1_model):
    cat = latents(sd1_model, "a cat")
    assert torch.allclose(latents(sd1_model, "a cat AND a dog:0"), cat, atol=1e-4)   # weight 0: no effect
    both = latents(sd1_model, "a cat AND a dog")
    assert (both - cat).abs().max() > 1e-3
    assert (latents(sd1_model, "a cat AND a dog:0.5") - both).abs().max() > 1e-4


def test_guidance_formula_for_composable_prompts():
    uncond = torch.zeros(2, 77, 4)
    conditioning = sampling.StepConditioning(uncond, torch.zeros(3, 77, 4), [[(0, 1.0), (1, 0.5)], [(2, -1.0)]])
    out = torch.stack([torch.full((1, 2, 2), v) for v in (1.0, 2.0, 10.0, 20.0, 40.0)])  # uncond 0,1; conds 0,1,2
    guided = sampling._guidance(out, conditioning, 3.0, use_uncond=True)
    assert torch.allclose(guided[0], torch.full((1, 2, 2), 1 + 3 * (10 - 1) + 3 * 0.5 * (20 - 1)))
    assert torch.allclose(guided[1], torch.full((1, 2, 2), 2 + 3 * -1.0 * (40 - 2)))


def test_batch_of_same_prompt_is_encoded_once(sd1_model, encode_calls):
    result = processing.process_images(txt2img(sd1_model, prompt="a red (ball:1.2)", batch_size=4, steps=2))
    assert len(result.images) == 4
    assert sorted(encode_calls) == ["", "a red (ball:1.2)"]


def test_negative_prompt_editing_and_long_prompts_mix(sd1_model):
    long = ", ".join(["a cat"] * 60)              # several chunks; uncond padded to the same length
    result = processing.process_images(txt2img(sd1_model, prompt=f"{long} AND a [dog:bird:1]",
                                               negative_prompt="[blurry:sharp:0.5]", steps=3))
    assert torch.isfinite(result.latents[0]).all()


def test_sdxl_model_with_editing_and_and(tmp_path):
    from modules import sd_models

    model = sd_models.load_model(str(make_tiny_checkpoint(tmp_path, "sdxl")), torch.device("cpu"), torch.float32)
    result = processing.process_images(txt2img(model, prompt="a [cat:dog:1] AND a hat:0.7", steps=2))
    plain = processing.process_images(txt2img(model, prompt="a cat", steps=2))
    assert torch.isfinite(result.latents[0]).all()
    assert (result.latents[0] - plain.latents[0]).abs().max() > 1e-4


def test_cfg_one_with_plain_prompt_skips_the_negative(sd1_model, monkeypatch):
    rows = []
    original = sampling._prepare

    def watching(conditioning, cfg, device, dtype):
        prepared = original(conditioning, cfg, device, dtype)
        rows.append(prepared[0].shape[0])
        return prepared

    monkeypatch.setattr(sampling, "_prepare", watching)
    processing.process_images(txt2img(sd1_model, prompt="a cat", cfg_scale=1.0, steps=2))
    processing.process_images(txt2img(sd1_model, prompt="a cat AND a dog", cfg_scale=1.0, steps=2))
    assert rows == [1, 3]


@settings(max_examples=25, deadline=None)
@given(st.lists(st.sampled_from(list("ab :|()[]\\.19-,") + [" AND ", " BREAK ", "<lora:x:1>", "(x:1e9)"]),
                max_size=25).map("".join))
def test_any_prompt_encodes_without_crashing(sd1_model, prompt):
    cache: dict = {}
    encode = prompt_schedules.text_cache_encoder(sd1_model, 1, "Original", cache)
    batch = prompt_schedules.BatchConditioning(encode, [prompt], [prompt], steps=3)
    for step in range(3):
        step_conditioning = batch.at(step)
        assert torch.isfinite(step_conditioning.conds).all() and torch.isfinite(step_conditioning.uncond).all()
        assert step_conditioning.conds.shape[1] == step_conditioning.uncond.shape[1]


def test_huge_emphasis_weights_encode_or_fail_clearly(sd1_model):
    for prompt in ["a (cat:1000000000)", "(x:1e9)", "a (cat:" + "9" * 30 + ")", "(" * 300 + "cat"]:
        encoded = text_encoding.encode_prompts(sd1_model, [prompt])
        assert torch.isfinite(encoded.embeds).all(), prompt
    with pytest.raises(ValueError, match="emphasis"):
        text_encoding.encode_prompts(sd1_model, ["((cat:" + "9" * 200 + "):" + "9" * 200 + ")"])
    with pytest.raises(ValueError, match="emphasis"):
        text_encoding.encode_prompts(sd1_model, ["(cat:" + "9" * 300 + ")"], emphasis="No norm")


def test_a1111_learned_conditioning_helpers(sd1_model):
    from modules import prompt_parser

    learned = prompt_parser.get_learned_conditioning(sd1_model, ["a [cat:dog:2]"], 4)
    assert [entry.end_at_step for entry in learned[0]] == [2, 4]
    assert torch.allclose(learned[0][1].cond.embeds, text_encoding.encode_prompts(sd1_model, ["a dog"]).embeds)
    multi = prompt_parser.get_multicond_learned_conditioning(sd1_model, ["a cat AND a hat:0.3"], 4)
    assert multi.shape == (1,) and [c.weight for c in multi.batch[0]] == [1.0, 0.3]
