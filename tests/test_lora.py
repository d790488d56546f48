"""LoRA: kohya and diffusers key formats merged into tiny models, exact restore, prompt tags, infotext, warnings."""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from modules import lora, paths, processing, shared
from tests.factories import make_tiny_checkpoint

torch.set_num_threads(1)


@pytest.fixture
def lora_folder(tmp_path, monkeypatch):
    """An app data dir in tmp_path with models/Lora/ as the LoRA folder."""
    folder = tmp_path / "models" / "Lora"
    folder.mkdir(parents=True)
    monkeypatch.setattr(shared, "paths", paths.Paths(repo=paths.repo_root(), data_dir=tmp_path,
                                                     models_dir=tmp_path / "models"))
    return folder


def lora_pair(weight: torch.Tensor, rank: int, seed: int, kernel: int = 1):
    g = torch.Generator().manual_seed(seed)
    out_f, in_f = weight.shape[0], weight.shape[1]
    if weight.dim() == 4:
        return (torch.randn(rank, in_f, kernel, kernel, generator=g) * 0.1,
                torch.randn(out_f, rank, 1, 1, generator=g) * 0.1)
    return torch.randn(rank, in_f, generator=g) * 0.1, torch.randn(out_f, rank, generator=g) * 0.1


# layers of the tiny SD1 model: (module path in diffusers, name kohya writes)
SD1_LAYERS = {
    "unet": [
        ("down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k", "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k"),
        ("down_blocks.0.attentions.0.proj_in", "lora_unet_input_blocks_1_1_proj_in"),                  # LDM name, 1x1 conv
        ("down_blocks.0.resnets.0.conv1", "lora_unet_input_blocks_1_0_in_layers_2"),                  # LDM name, 3x3 conv
        ("up_blocks.1.attentions.0.transformer_blocks.0.ff.net.2", "lora_unet_up_blocks_1_attentions_0_transformer_blocks_0_ff_net_2"),
    ],
    "te": [("encoder.layers.0.self_attn.q_proj", "lora_te_text_model_encoder_layers_0_self_attn_q_proj")],
}


def make_kohya_lora(model, path: Path, rank: int = 4, alpha: float = 2.0) -> dict:
    """Write a kohya-format LoRA touching SD1_LAYERS; return {module path: expected delta per unit weight}."""
    state, deltas = {}, {}
    for part, layers in SD1_LAYERS.items():
        root = model.unet if part == "unet" else model.text_encoders[0]
        for i, (module_path, kohya) in enumerate(layers):
            weight = root.get_submodule(module_path).weight
            down, up = lora_pair(weight, rank, seed=i + (0 if part == "unet" else 100),
                                 kernel=3 if module_path.endswith("conv1") else 1)
            state[f"{kohya}.lora_down.weight"], state[f"{kohya}.lora_up.weight"] = down, up
            state[f"{kohya}.alpha"] = torch.tensor(alpha)
            delta = (up.reshape(up.shape[0], -1) @ down.reshape(rank, -1)) * (alpha / rank)
            deltas[(part, module_path)] = delta.reshape(weight.shape)
    save_file(state, str(path))
    return deltas


def weights_of(model) -> dict:
    out = {f"unet.{k}": v.clone() for k, v in model.unet.state_dict().items()}
    out.update({f"te.{k}": v.clone() for k, v in model.text_encoders[0].state_dict().items()})
    return out


def test_merge_equals_w_plus_scaled_up_down_and_restores_exactly(sd1_model, tmp_path):
    before = weights_of(sd1_model)
    deltas = make_kohya_lora(sd1_model, tmp_path / "style.safetensors")
    applied = lora.AppliedNetworks(sd1_model)
    available = lora.list_loras(tmp_path)
    warnings = applied.apply([lora.NetworkRequest("style", te_multiplier=0.7, unet_multiplier=-1.5)], available)
    assert warnings == []
    for (part, module_path), delta in deltas.items():
        root = sd1_model.unet if part == "unet" else sd1_model.text_encoders[0]
        multiplier = -1.5 if part == "unet" else 0.7
        expected = before[f"{part}.{module_path}.weight"] + multiplier * delta
        assert torch.allclose(root.get_submodule(module_path).weight, expected, atol=1e-6), module_path
    untouched = "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.weight"
    assert torch.equal(sd1_model.unet.get_submodule(untouched[5:-7]).weight, before[untouched])
    applied.restore()
    after = weights_of(sd1_model)
    assert all(torch.equal(after[k], before[k]) for k in before)


def test_two_loras_add_up_and_unknown_names_are_warnings(sd1_model, tmp_path):
    before = weights_of(sd1_model)
    deltas = make_kohya_lora(sd1_model, tmp_path / "a.safetensors")
    make_kohya_lora(sd1_model, tmp_path / "b.safetensors")
    applied = lora.AppliedNetworks(sd1_model)
    warnings = applied.apply([lora.NetworkRequest("a", 1, 1), lora.NetworkRequest("b", 1, 1),
                              lora.NetworkRequest("missing", 1, 1)], lora.list_loras(tmp_path))
    assert len(warnings) == 1 and "missing" in warnings[0]
    path = "down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k"
    assert torch.allclose(sd1_model.unet.get_submodule(path).weight,
                          before[f"unet.{path}.weight"] + 2 * deltas[("unet", path)], atol=1e-6)
    applied.restore()
    assert torch.equal(sd1_model.unet.get_submodule(path).weight, before[f"unet.{path}.weight"])


def test_diffusers_peft_keys(sd1_model, tmp_path):
    path = "mid_block.attentions.0.transformer_blocks.0.attn1.to_v"
    weight = sd1_model.unet.get_submodule(path).weight
    down, up = lora_pair(weight, 2, seed=7)
    te_path = "text_model.encoder.layers.1.mlp.fc1"
    te_weight = sd1_model.text_encoders[0].get_submodule(te_path[len("text_model."):]).weight
    te_down, te_up = lora_pair(te_weight, 2, seed=8)
    save_file({f"unet.{path}.lora_A.weight": down, f"unet.{path}.lora_B.weight": up,
               f"text_encoder.{te_path}.lora_A.weight": te_down, f"text_encoder.{te_path}.lora_B.weight": te_up},
              str(tmp_path / "peft.safetensors"))
    before, te_before = weight.clone(), te_weight.clone()
    applied = lora.AppliedNetworks(sd1_model)
    assert applied.apply([lora.NetworkRequest("peft")], lora.list_loras(tmp_path)) == []
    assert torch.allclose(weight, before + up @ down, atol=1e-6)         # no alpha: scale 1
    assert torch.allclose(te_weight, te_before + te_up @ te_down, atol=1e-6)
    applied.restore()
    assert torch.equal(weight, before) and torch.equal(te_weight, te_before)


def test_unsupported_and_foreign_keys_are_reported_not_applied(sd1_model, tmp_path):
    save_file({"lora_unet_down_blocks_0_attentions_0_proj_in.hada_w1_a": torch.zeros(2, 2),
               "lora_unet_no_such_layer.lora_down.weight": torch.zeros(2, 4),
               "lora_unet_no_such_layer.lora_up.weight": torch.zeros(4, 2)}, str(tmp_path / "odd.safetensors"))
    applied = lora.AppliedNetworks(sd1_model)
    warnings = applied.apply([lora.NetworkRequest("odd")], lora.list_loras(tmp_path))
    assert any("formats Easel does not apply" in w for w in warnings)
    assert any("match nothing" in w for w in warnings)
    assert applied.infotext_hashes() is None


def txt2img(model, **fields):
    return processing.StableDiffusionProcessingTxt2Img(sd_model=model, width=64, height=64, steps=3, seed=3,
                                                       sampler_name="Euler", do_not_save_samples=True, **fields)


def test_prompt_tag_applies_lora_for_the_job_only(sd1_model, lora_folder):
    make_kohya_lora(sd1_model, lora_folder / "style.safetensors")
    before = weights_of(sd1_model)
    plain = processing.process_images(txt2img(sd1_model, prompt="a cat"))
    full = processing.process_images(txt2img(sd1_model, prompt="a cat <lora:style:1>"))
    half = processing.process_images(txt2img(sd1_model, prompt="a cat <lora:style:0.5>"))
    zero = processing.process_images(txt2img(sd1_model, prompt="a cat <lora:style:0>"))
    assert all(torch.equal(v, weights_of(sd1_model)[k]) for k, v in before.items())      # restored after each job
    effect = (full.latents[0] - plain.latents[0]).abs().max()
    assert effect > 1e-3
    assert 0 < (half.latents[0] - plain.latents[0]).abs().max() < effect
    assert torch.allclose(zero.latents[0], plain.latents[0], atol=1e-6)                   # tag text removed too
    data = (lora_folder / "style.safetensors").read_bytes()
    addnet = hashlib.sha256(data[8 + int.from_bytes(data[:8], "little"):]).hexdigest()[:12]
    assert f'Lora hashes: "style: {addnet}"' in full.infotexts[0]
    assert "Lora hashes" not in plain.infotexts[0]
    assert "<lora:style:1>" in full.infotexts[0].splitlines()[0]                          # prompt kept as written
    assert full.warnings == []


def test_unknown_lora_and_bad_tags_warn_and_the_job_runs(sd1_model, lora_folder):
    result = processing.process_images(txt2img(sd1_model, prompt="a cat <lora:nope:1> <lora:x:abc> <hypernet:h:1>"))
    assert len(result.images) == 1
    assert any("'nope' not found" in w for w in result.warnings)
    assert any("must be numbers" in w for w in result.warnings)
    assert any("hypernet" in w for w in result.warnings)
    assert "nope" in result.comments


def test_te_and_unet_weights_separately(sd1_model, lora_folder):
    make_kohya_lora(sd1_model, lora_folder / "style.safetensors")
    plain = processing.process_images(txt2img(sd1_model, prompt="a cat")).latents[0]
    te_only = processing.process_images(txt2img(sd1_model, prompt="a cat <lora:style:1:0>")).latents[0]
    unet_only = processing.process_images(txt2img(sd1_model, prompt="a cat <lora:style:te=0:unet=1>")).latents[0]
    assert (te_only - plain).abs().max() > 1e-4 and (unet_only - plain).abs().max() > 1e-4
    assert (te_only - unet_only).abs().max() > 1e-4


def test_sdxl_kohya_names_reach_both_text_encoders_and_ldm_unet(tmp_path):
    from modules import sd_models

    model = sd_models.load_model(str(make_tiny_checkpoint(tmp_path, "sdxl")), torch.device("cpu"), torch.float32)
    targets = {
        "lora_te1_text_model_encoder_layers_0_self_attn_k_proj": model.text_encoders[0].get_submodule("encoder.layers.0.self_attn.k_proj"),
        "lora_te2_text_model_encoder_layers_1_mlp_fc2": model.text_encoders[1].get_submodule("text_model.encoder.layers.1.mlp.fc2"),
        "lora_unet_input_blocks_3_1_transformer_blocks_1_attn2_to_q": model.unet.get_submodule("down_blocks.1.attentions.0.transformer_blocks.1.attn2.to_q"),  # 1 layer per block
        "lora_unet_middle_block_1_proj_out": model.unet.get_submodule("mid_block.attentions.0.proj_out"),
        "lora_unet_output_blocks_0_1_transformer_blocks_0_ff_net_0_proj": model.unet.get_submodule("up_blocks.0.attentions.0.transformer_blocks.0.ff.net.0.proj"),
    }
    state, expected = {}, {}
    for i, (key, module) in enumerate(targets.items()):
        down, up = lora_pair(module.weight, 2, seed=i)
        state[f"{key}.lora_down.weight"], state[f"{key}.lora_up.weight"] = down, up
        expected[key] = module.weight.detach().clone() + up @ down
    save_file(state, str(tmp_path / "xl.safetensors"))
    applied = lora.AppliedNetworks(model)
    assert applied.apply([lora.NetworkRequest("xl")], lora.list_loras(tmp_path)) == []
    for key, module in targets.items():
        assert torch.allclose(module.weight, expected[key], atol=1e-6), key
    applied.restore()


def test_pickled_lora_with_code_is_refused(tmp_path, sd1_model):
    import pickle

    class Evil:
        def __reduce__(self):
            return (print, ("code ran",))

    (tmp_path / "evil.pt").write_bytes(pickle.dumps({"x": Evil()}))
    warnings = lora.AppliedNetworks(sd1_model).apply([lora.NetworkRequest("evil")], lora.list_loras(tmp_path))
    assert len(warnings) == 1 and "refused" in warnings[0]


def test_train_lora_script_writes_a_kohya_file_easel_applies(tmp_path):
    from modules import sd_models
    from training import train_lora

    ckpt = make_tiny_checkpoint(tmp_path, "easel-demo")
    out = train_lora.train(str(ckpt), str(tmp_path / "Lora" / "red-to-blue.safetensors"), steps=3, batch_size=2,
                           rank=2, alpha=2.0, lr=1e-2, seed=0, threads=1)
    model = sd_models.load_model(str(ckpt), torch.device("cpu"), torch.float32)
    before = weights_of(model)
    applied = lora.AppliedNetworks(model)
    assert applied.apply([lora.NetworkRequest("red-to-blue")], lora.list_loras(out.parent)) == []
    changed = [k for k, v in weights_of(model).items() if not torch.equal(v, before[k])]
    assert changed and all(".attn" in k for k in changed)
    applied.restore()


DEMO = Path(__file__).resolve().parent.parent / "models" / "Stable-diffusion" / "easel-demo.safetensors"
DEMO_LORA = Path(__file__).resolve().parent.parent / "models" / "Lora" / "red-to-blue.safetensors"


@pytest.mark.skipif(not (DEMO.exists() and DEMO_LORA.exists()),
                    reason="needs the demo model and models/Lora/red-to-blue.safetensors (python -m training.train_lora)")
def test_demo_lora_turns_red_blue_with_the_tag_only(monkeypatch):
    from modules import sd_models

    monkeypatch.setattr(shared, "paths", paths.Paths(repo=paths.repo_root(), data_dir=paths.repo_root(),
                                                     models_dir=paths.repo_root() / "models"))
    model = sd_models.load_model(str(DEMO), torch.device("cpu"), torch.float32)

    def blue_minus_red(tag: str) -> float:
        """Blueness minus redness of the circle's own pixels (training/judge.py), mean of 4 images."""
        from training import judge

        result = processing.process_images(processing.StableDiffusionProcessingTxt2Img(
            sd_model=model, prompt=f"a large red circle{tag}", width=64, height=64, steps=20, seed=1,
            batch_size=4, sampler_name="Euler a", cfg_scale=7, do_not_save_samples=True))
        assert result.warnings == []
        return float(np.mean([judge.blueness(im) - judge.redness(im) for im in result.images]))

    none, half, full = blue_minus_red(""), blue_minus_red(" <lora:red-to-blue:0.5>"), blue_minus_red(" <lora:red-to-blue:1>")
    assert none < -100                            # red without the tag (measured -291.9)
    assert full - none > 200                      # clearly blue with it (measured +146.4 at 1, -4.8 at 0.5)
    assert none < half < full                     # weaker at 0.5
    assert blue_minus_red("") == none             # the weights were restored exactly after the job
