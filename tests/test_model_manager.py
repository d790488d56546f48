"""Checkpoint and VAE switching through the model manager (the worker queue does the loading)."""
from __future__ import annotations

import gc
import weakref

import pytest
import torch
from safetensors.torch import save_file

from modules import cmd_args, jobs, model_manager, options, paths as paths_module, processing
from modules.checkpoint_export import vae_to_original
from tests.factories import make_tiny_checkpoint, make_tiny_components

torch.set_num_threads(1)


def cpu_fp32():
    from modules import devices

    return devices.choose(cmd_args.parse_args(["--use-cpu", "all"], environ={}), "fp32")


@pytest.fixture
def manager(tmp_path):
    ckpts = tmp_path / "models" / "Stable-diffusion"
    make_tiny_checkpoint(ckpts, "sd1", name="alpha", seed=1)
    make_tiny_checkpoint(ckpts, "sd1", name="beta", seed=2)
    vae_dir = tmp_path / "models" / "VAE"
    vae_dir.mkdir(parents=True)
    save_file(vae_to_original(make_tiny_components("sd1", seed=9)["vae"].state_dict()), vae_dir / "other.safetensors")
    paths = paths_module.Paths(repo=tmp_path, data_dir=tmp_path, models_dir=tmp_path / "models")
    queue = jobs.JobQueue()
    yield model_manager.ModelManager(queue, paths, options.Options(), cpu_fp32)
    queue.shutdown()


def wait(job):
    assert job.wait(120), "load job did not finish"
    assert job.status == "done", job.error
    return job.result


def generate(model):
    p = processing.StableDiffusionProcessingTxt2Img(sd_model=model, prompt="x", seed=1, steps=2, width=64, height=64,
                                                     do_not_save_samples=True)
    return processing.process_images(p)


def test_lists_and_switches_checkpoints_freeing_the_old_one(manager):
    assert [c.name for c in manager.checkpoints()] == ["alpha.safetensors", "beta.safetensors"]
    first = wait(manager.request_load("alpha"))
    assert manager.status_text().startswith("Ready: alpha.safetensors")
    old = weakref.ref(first.unet)
    del first
    second = wait(manager.request_load("beta.safetensors"))
    assert manager.current is second and second.checkpoint.model_name == "beta"
    assert manager.opts.sd_model_checkpoint == second.checkpoint.title
    gc.collect()
    assert old() is None, "the previous U-Net is still alive after switching"
    assert "Model: beta" in generate(second).infotexts[0]


def test_external_vae_changes_the_image_and_is_named_in_infotext(manager):
    model = wait(manager.request_load("alpha"))
    own = generate(model)
    assert "VAE:" not in own.infotexts[0]
    wait(manager.request_vae("other.safetensors"))
    other = generate(manager.current)
    assert "VAE: other.safetensors" in other.infotexts[0] and "VAE hash: " in other.infotexts[0]
    assert own.images[0].tobytes() != other.images[0].tobytes()
    wait(manager.request_vae("Automatic"))
    back = generate(manager.current)
    assert back.images[0].tobytes() == own.images[0].tobytes()


def test_unknown_vae_and_checkpoint_are_clear_errors(manager):
    wait(manager.request_load("alpha"))
    job = manager.request_vae("nope.safetensors")
    job.wait(60)
    assert job.status == "failed" and "no VAE named 'nope.safetensors'" in job.error
    with pytest.raises(ValueError, match="not found"):
        manager.request_load("gamma")


def test_no_checkpoint_says_how_to_add_one(tmp_path):
    paths = paths_module.Paths(repo=tmp_path, data_dir=tmp_path, models_dir=tmp_path / "models")
    manager = model_manager.ModelManager(jobs.JobQueue(), paths, options.Options(), cpu_fp32)
    assert "models/Stable-diffusion" in manager.status_text()
    with pytest.raises(RuntimeError, match="models/Stable-diffusion"):
        manager.require_model()


def test_precision_setting_and_flag_choose_the_cpu_dtype():
    from modules import devices

    def dtype(argv, setting):
        return devices.choose(cmd_args.parse_args(argv + ["--use-cpu", "all"], environ={}), setting).dtype

    assert dtype([], "fp32") == torch.float32
    assert dtype([], "bf16") == torch.bfloat16                      # the setting applies without a flag
    assert dtype(["--precision", "bf16"], "fp32") == torch.bfloat16
    assert dtype(["--precision", "full"], "bf16") == torch.float32  # full = fp32 everywhere
    assert dtype(["--no-half", "--precision", "bf16"], "bf16") == torch.float32


def test_default_checkpoint_prefers_ckpt_dir_over_the_shipped_demo(tmp_path):
    """--ckpt-dir names the user's own folder: its first model is the default, not the demo model in the repo."""
    repo_models = tmp_path / "repo" / "models" / "Stable-diffusion"
    make_tiny_checkpoint(repo_models, "sd1", name="easel-demo", seed=1)
    mine = tmp_path / "mine"
    make_tiny_checkpoint(mine, "sd1", name="zeta", seed=2)
    paths = paths_module.Paths(repo=tmp_path / "repo", data_dir=tmp_path, models_dir=tmp_path / "models",
                               ckpt_dir_override=mine)
    manager = model_manager.ModelManager(jobs.JobQueue(), paths, options.Options(), cpu_fp32)
    manager.refresh()
    assert manager.default_checkpoint().name == "zeta.safetensors"
    assert manager.default_checkpoint("easel-demo.safetensors").name == "easel-demo.safetensors"
    without = paths_module.Paths(repo=tmp_path / "repo", data_dir=tmp_path, models_dir=tmp_path / "models")
    manager = model_manager.ModelManager(jobs.JobQueue(), without, options.Options(), cpu_fp32)
    manager.refresh()
    assert manager.default_checkpoint().name == "easel-demo.safetensors"


def test_changing_the_precision_setting_reloads_the_model_in_it(tmp_path):
    """The precision setting applies to the loaded model (after a queued reload), not only after a restart."""
    from modules import devices

    make_tiny_checkpoint(tmp_path / "models" / "Stable-diffusion", "sd1", name="alpha", seed=1)
    paths = paths_module.Paths(repo=tmp_path, data_dir=tmp_path, models_dir=tmp_path / "models")
    opts, queue = options.Options(), jobs.JobQueue()
    flags = cmd_args.parse_args(["--use-cpu", "all"], environ={})
    manager = model_manager.ModelManager(queue, paths, opts, lambda: devices.choose(flags, opts.precision))
    opts.onchange("precision", manager.device_settings_changed, call=False)   # as app.build_state wires it
    try:
        assert wait(manager.request_load("alpha")).unet.dtype == torch.float32
        opts.set("precision", "bf16")
        reloaded = wait(manager.queue.submit(lambda job: manager.current, label="after reload"))
        assert reloaded.unet.dtype == torch.bfloat16
        assert manager.device_choice.dtype == torch.bfloat16
    finally:
        queue.shutdown()
