"""Listing, hashing, loading (safetensors/ckpt/diffusers), export round trip, external VAEs."""
import gc
import hashlib
import json
import os
import pathlib
import weakref

import pytest
import torch

from modules import sd_models, sd_vae
from modules.checkpoint_export import export_original_checkpoint
from modules.model_families import FAMILIES, UnknownModelError
from tests.conftest_models import hash_cache, one_thread  # noqa: F401  (fixtures)
from tests.factories import make_tiny_checkpoint, make_tiny_components

FAMILY_IDS = [family.id for family in FAMILIES]


# ---------------------------------------------------------------- listing and hashes

def test_list_checkpoints_finds_files_subfolders_and_diffusers_folders(tmp_path, hash_cache):
    root = tmp_path / "Stable-diffusion"
    make_tiny_checkpoint(root, "sd1", name="b-model")
    make_tiny_checkpoint(root / "sub", "sd1", fmt="ckpt", name="a-model")
    make_tiny_checkpoint(root, "sd1", fmt="diffusers", name="c-diffusers")
    (root / "notes.txt").write_text("not a model")
    (root / "b-model.yaml").write_text("model: {}")
    infos = sd_models.list_checkpoints([root, tmp_path / "missing-dir"], cache_path=hash_cache)
    assert [info.name for info in infos] == ["b-model.safetensors", "c-diffusers", "sub/a-model.ckpt"]
    assert [info.model_name for info in infos] == ["b-model", "c-diffusers", "sub/a-model"]
    assert all(os.path.isabs(info.filename) for info in infos)
    assert infos[0].title == "b-model.safetensors"  # not hashed yet: A1111 shows the bare name


def test_hash_is_sha256_cached_once_per_file(tmp_path, hash_cache):
    path = make_tiny_checkpoint(tmp_path / "models", "sd1")
    expected = hashlib.sha256(path.read_bytes()).hexdigest()
    info = sd_models.list_checkpoints(tmp_path / "models", cache_path=hash_cache)[0]
    reads = sd_models.hash_file_reads
    assert info.sha256() == expected and info.shorthash() == expected[:10]
    assert info.title == f"tiny-sd1.safetensors [{expected[:10]}]"
    assert sd_models.hash_file_reads == reads + 1
    entry = json.loads(pathlib.Path(hash_cache).read_text())["hashes-sha256"][str(path.resolve())]
    assert entry["sha256"] == expected and entry["size"] == path.stat().st_size

    again = sd_models.list_checkpoints(tmp_path / "models", cache_path=hash_cache)[0]
    assert again.title == info.title  # the cached hash shows in the title at listing time
    assert again.sha256() == expected
    assert sd_models.hash_file_reads == reads + 1  # not read again

    make_tiny_checkpoint(tmp_path / "models", "sd1", seed=1)  # same name, new content
    changed = sd_models.list_checkpoints(tmp_path / "models", cache_path=hash_cache)[0]
    assert changed.sha256() == hashlib.sha256(path.read_bytes()).hexdigest() != expected
    assert sd_models.hash_file_reads == reads + 2


def test_diffusers_folder_hash_is_its_unet_weights(tmp_path, hash_cache):
    folder = make_tiny_checkpoint(tmp_path, "sd1", fmt="diffusers")
    info = sd_models.CheckpointInfo(str(folder), folder.name, hash_cache)
    unet_file = folder / "unet" / "diffusion_pytorch_model.safetensors"
    assert info.sha256() == hashlib.sha256(unet_file.read_bytes()).hexdigest()


def test_get_checkpoint_by_title_name_and_hash(tmp_path, hash_cache):
    make_tiny_checkpoint(tmp_path, "sd1", name="one")
    make_tiny_checkpoint(tmp_path, "sd2", name="two")
    two = sd_models.list_checkpoints(tmp_path, cache_path=hash_cache)[1]
    short = two.shorthash()
    sd_models.list_checkpoints(tmp_path, cache_path=hash_cache)
    for query in ("two.safetensors", "two", f"two.safetensors [{short}]", short, two.sha256(), "two.safetensors [0000000000]"):
        assert sd_models.get_checkpoint(query).filename == two.filename, query
    assert sd_models.get_checkpoint("three") is None


# ---------------------------------------------------------------- loading and the export round trip

def outputs(unet, vae, text_encoders, sdxl):
    """Deterministic outputs of every network, for comparing two copies of a model."""
    torch.manual_seed(123)
    tokens = torch.tensor([[49406, 320, 1125, 539, 49407] + [49407] * 4])
    hidden = [encoder(tokens, output_hidden_states=True) for encoder in text_encoders]
    results = [h.last_hidden_state for h in hidden]
    context = torch.cat([h.hidden_states[-2] for h in hidden], dim=-1) if sdxl else hidden[0].last_hidden_state
    sample = torch.randn(1, unet.config.in_channels, 16, 16)
    extra = {}
    if sdxl:
        results.append(hidden[1].text_embeds)
        extra["added_cond_kwargs"] = {"text_embeds": hidden[1].text_embeds, "time_ids": torch.tensor([[64.0, 64, 0, 0, 64, 64]])}
    results.append(unet(sample, 500, encoder_hidden_states=context, **extra).sample)
    results.append(vae.decode(torch.randn(1, 4, 8, 8)).sample)
    return results


@pytest.mark.parametrize("family_id", FAMILY_IDS)
def test_export_then_load_gives_identical_outputs(tmp_path, family_id):
    parts = make_tiny_components(family_id, seed=3)
    path = tmp_path / "model.safetensors"
    export_original_checkpoint(parts["unet"], parts["vae"], parts["text_encoder"], path,
                               text_encoder_2=parts["text_encoder_2"])
    (tmp_path / "model.json").write_text(json.dumps({"family": family_id}))  # sd2-v has no v_pred key here
    model = sd_models.load_model(path)
    assert model.family.id == family_id
    sdxl = parts["text_encoder_2"] is not None
    original = [parts["text_encoder"]] + ([parts["text_encoder_2"]] if sdxl else [])
    with torch.no_grad():
        expected = outputs(parts["unet"], parts["vae"], original, sdxl)
        got = outputs(model.unet, model.vae, model.text_encoders, sdxl)
    for want, have in zip(expected, got, strict=True):
        torch.testing.assert_close(have, want, rtol=0, atol=0)


@pytest.mark.parametrize("family_id, fmt", [("sd1", "ckpt"), ("sdxl", "ckpt"), ("sd2-v", "ckpt"),
                                            ("sd1", "diffusers"), ("sd2-v", "diffusers"), ("sdxl", "diffusers"),
                                            ("easel-demo", "diffusers")])
def test_ckpt_and_diffusers_folders_load_the_same_weights(tmp_path, family_id, fmt):
    path = make_tiny_checkpoint(tmp_path, family_id, fmt=fmt, seed=5)
    parts = make_tiny_components(family_id, seed=5)
    model = sd_models.load_model(path)
    assert model.family.id == family_id
    sdxl = parts["text_encoder_2"] is not None
    original = [parts["text_encoder"]] + ([parts["text_encoder_2"]] if sdxl else [])
    with torch.no_grad():
        for want, have in zip(outputs(parts["unet"], parts["vae"], original, sdxl),
                              outputs(model.unet, model.vae, model.text_encoders, sdxl), strict=True):
            torch.testing.assert_close(have, want, rtol=0, atol=0)


def test_a_diffusers_folder_loads_into_aligned_memory(tmp_path):
    """Weights left as unaligned views of the .safetensors mapping compute differently in
    oneDNN (1e-6 on an AMD EPYC), so a folder and its single-file copy made different images."""
    model = sd_models.load_model(make_tiny_checkpoint(tmp_path, "sd1", fmt="diffusers", seed=5))
    for module in [model.unet, model.vae, *model.text_encoders]:
        assert all(t.data_ptr() % 64 == 0 for t in [*module.parameters(), *module.buffers()] if t.numel())


def test_loaded_model_carries_what_generation_needs(tmp_path):
    sd1 = sd_models.load_model(make_tiny_checkpoint(tmp_path, "sd1"))
    assert sd1.scheduler_config["beta_schedule"] == "scaled_linear"
    assert (sd1.scheduler_config["beta_start"], sd1.scheduler_config["beta_end"]) == (0.00085, 0.012)
    assert sd1.scheduler_config["num_train_timesteps"] == 1000 and sd1.scheduler_config["prediction_type"] == "epsilon"
    assert sd1.vae_scaling_factor == 0.18215 and sd1.tokenizers[0].pad_token_id == 49407
    assert sd1.tokenizers[0]("a cat").input_ids == [49406, 320, 2368, 49407]
    sd2v = sd_models.load_model(make_tiny_checkpoint(tmp_path, "sd2-v"))
    assert sd2v.scheduler_config["prediction_type"] == "v_prediction" and sd2v.tokenizers[0].pad_token_id == 0
    xl = sd_models.load_model(make_tiny_checkpoint(tmp_path, "sdxl"))
    assert xl.vae_scaling_factor == 0.13025 and [t.pad_token_id for t in xl.tokenizers] == [49407, 0]
    assert type(xl.text_encoders[1]).__name__ == "CLIPTextModelWithProjection"
    demo = sd_models.load_model(make_tiny_checkpoint(tmp_path, "easel-demo"))
    demo_vae_config = sd_models.read_config(demo.family, "vae")  # the demo trainer sets scaling_factor there
    assert demo.family.native_size == 64 and demo.vae_scaling_factor == demo_vae_config["scaling_factor"]


def test_bf16_load_casts_every_weight(tmp_path):
    model = sd_models.load_model(make_tiny_checkpoint(tmp_path, "sdxl"), dtype=torch.bfloat16)
    for module in [model.unet, model.vae, *model.text_encoders]:
        assert {p.dtype for p in module.parameters()} == {torch.bfloat16}
        assert not any(p.is_meta for p in module.parameters())
    assert model.dtype == torch.bfloat16


def test_fp16_on_cpu_is_refused(tmp_path):
    with pytest.raises(ValueError, match="fp16 on CPU"):
        sd_models.load_model(make_tiny_checkpoint(tmp_path, "sd1"), dtype=torch.float16)


def test_yaml_override_makes_an_sd2_checkpoint_v_prediction(tmp_path):
    path = make_tiny_checkpoint(tmp_path, "sd2")
    assert sd_models.load_model(path).scheduler_config["prediction_type"] == "epsilon"
    (tmp_path / "tiny-sd2.yaml").write_text(
        "model:\n  params:\n    parameterization: \"v\"\n    cond_stage_config:\n"
        "      target: ldm.modules.encoders.modules.FrozenOpenCLIPEmbedder\n")
    model = sd_models.load_model(path)
    assert model.family.id == "sd2-v" and model.scheduler_config["prediction_type"] == "v_prediction"


def test_zero_terminal_snr_marker_gives_every_sampler_the_rescaled_schedule(tmp_path):
    parts = make_tiny_components("sd1")
    path = tmp_path / "ztsnr.safetensors"
    export_original_checkpoint(parts["unet"], parts["vae"], parts["text_encoder"], path,
                               extra_keys={"v_pred": torch.tensor([]), "ztsnr": torch.tensor([])})
    model = sd_models.load_model(path)
    assert model.family.zero_terminal_snr and model.scheduler_config["prediction_type"] == "v_prediction"
    betas = torch.tensor(model.scheduler_config["trained_betas"], dtype=torch.float64)
    assert torch.cumprod(1 - betas, 0)[-1].item() == pytest.approx(2.0 ** -24, rel=1e-6)
    plain = sd_models.load_model(make_tiny_checkpoint(tmp_path, "sd1")).scheduler_config
    assert plain.get("trained_betas") is None


def test_diffusers_folder_with_rescaled_scheduler_is_zero_terminal_snr(tmp_path):
    folder = make_tiny_checkpoint(tmp_path, "sd1", fmt="diffusers")
    config_path = folder / "scheduler" / "scheduler_config.json"
    config = json.loads(config_path.read_text())
    config_path.write_text(json.dumps({**config, "rescale_betas_zero_snr": True}))
    model = sd_models.load_model(folder)
    assert model.family.zero_terminal_snr and "rescale_betas_zero_snr" not in model.scheduler_config


def test_ckpt_with_state_dict_nesting_and_extra_entries_loads(tmp_path):
    flat = torch.load(make_tiny_checkpoint(tmp_path, "sd1", fmt="ckpt"), weights_only=True)
    nested = tmp_path / "nested.ckpt"
    torch.save({"state_dict": flat, "global_step": 470000, "epoch": 6}, nested)
    assert sd_models.load_model(nested).family.id == "sd1"


class _Exploit:
    """Pickles as 'call pathlib.Path.touch(marker)': loading it with plain pickle would create the file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


def test_malicious_pickle_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(1)}, "x": _Exploit(marker)}, path)
    with pytest.raises(sd_models.UnsafeCheckpointError) as err:
        sd_models.load_model(path)
    assert "refused to load" in str(err.value) and "run code" in str(err.value)
    assert not marker.exists()


def test_unknown_checkpoint_is_a_clear_error(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "lora.safetensors"
    save_file({"lora_unet_down.alpha": torch.ones(1)}, path)
    with pytest.raises(UnknownModelError, match="no known model family"):
        sd_models.load_model(path)


def test_unload_frees_the_networks(tmp_path):
    model = sd_models.load_model(make_tiny_checkpoint(tmp_path, "sd1"))
    unet_ref = weakref.ref(model.unet)
    model.unload()
    gc.collect()
    assert unet_ref() is None and model.unet is None and model.text_encoders == []


# ---------------------------------------------------------------- external VAEs

def test_external_vae_listed_and_applied(tmp_path):
    from safetensors.torch import save_file

    from modules.checkpoint_export import vae_to_original

    vae_dir = tmp_path / "VAE"
    (vae_dir / "sub").mkdir(parents=True)
    other = make_tiny_components("sd1", seed=9)["vae"]
    original = vae_to_original(other.state_dict())
    save_file(original, vae_dir / "plain.safetensors")  # bare LDM names
    torch.save({"state_dict": {f"first_stage_model.{k}": v for k, v in original.items()}}, vae_dir / "sub" / "prefixed.pt")
    (vae_dir / "readme.txt").write_text("x")
    assert [v.name for v in sd_vae.list_vaes(vae_dir)] == ["plain.safetensors", "sub/prefixed.pt"]

    latent = torch.randn(1, 4, 8, 8)
    with torch.no_grad():
        want = other.decode(latent).sample
        for vae_file in sd_vae.list_vaes(vae_dir):
            model = sd_models.load_model(make_tiny_checkpoint(tmp_path, "sd1"), vae_path=vae_file.filename)
            assert model.vae_path == vae_file.filename
            torch.testing.assert_close(model.vae.decode(latent).sample, want, rtol=0, atol=0)


def test_external_vae_of_another_shape_is_refused(tmp_path):
    from safetensors.torch import save_file

    from modules.checkpoint_export import vae_to_original

    model = sd_models.load_model(make_tiny_checkpoint(tmp_path, "sd1"))
    wrong = {k: v for k, v in vae_to_original(make_tiny_components("sd1")["vae"].state_dict()).items()}
    wrong["decoder.conv_out.weight"] = torch.zeros(3, 16, 3, 3)
    save_file(wrong, tmp_path / "wrong.safetensors")
    with pytest.raises(ValueError, match="does not fit"):
        sd_vae.apply_vae(model, str(tmp_path / "wrong.safetensors"))
