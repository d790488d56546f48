"""The demo model's training recipe: timestep sampling is reproducible and leans on high noise as documented."""
import json

import pytest
import torch

from training.train_demo import (channel_mean_error, diffusion_target, loss_weight, mean_loss, sample_timesteps,
                                 training_alphas_cumprod)


def test_timesteps_are_a_function_of_the_generator_seed():
    a = sample_timesteps(64, torch.Generator().manual_seed(3), 0.4, 600)
    b = sample_timesteps(64, torch.Generator().manual_seed(3), 0.4, 600)
    assert torch.equal(a, b)


def test_high_noise_share_moves_timesteps_into_the_high_range_and_keeps_the_full_range():
    t = sample_timesteps(20_000, torch.Generator().manual_seed(0), 0.4, 600)
    assert int(t.min()) == 0 and int(t.max()) == 999
    # uniform alone puts 40% at >= 600; with 40% drawn from 600..999 it is 0.6 * 0.4 + 0.4 = 64%
    assert abs(float((t >= 600).float().mean()) - 0.64) < 0.02
    plain = sample_timesteps(20_000, torch.Generator().manual_seed(0), 0.0, 600)
    assert abs(float((plain >= 600).float().mean()) - 0.40) < 0.02


def test_a_floor_keeps_the_pure_noise_steps_training():
    """Min-SNR alone gives zero weight at zero SNR, where only the caption can decide the layout."""
    alphas = training_alphas_cumprod(zero_terminal_snr=True)
    snr = alphas / (1 - alphas)
    weights = loss_weight(snr, "v_prediction", 5.0, floor=1.0)
    x0_weights = weights * (snr + 1)  # v-loss = (SNR + 1) x0-loss
    assert x0_weights[999].item() == pytest.approx(1.0) and x0_weights[0].item() == pytest.approx(5.0)
    assert bool((x0_weights >= 1.0 - 1e-6).all() and (x0_weights <= 5.0 + 1e-6).all())


def test_v_target_at_pure_noise_is_the_negated_image():
    alphas = training_alphas_cumprod(zero_terminal_snr=True)
    latents, noise = torch.randn(2, 4, 8, 8), torch.randn(2, 4, 8, 8)
    v = diffusion_target(latents, noise, alphas[999].view(1, 1, 1, 1), "v_prediction")
    assert torch.allclose(v, -latents, atol=1e-3)
    assert torch.equal(diffusion_target(latents, noise, alphas[999], "epsilon"), noise)


def test_epsilon_min_snr_without_floor_is_the_shipped_weighting():
    alphas = training_alphas_cumprod(zero_terminal_snr=False)
    snr = alphas / (1 - alphas)
    assert torch.allclose(loss_weight(snr, "epsilon", 5.0), torch.clamp(snr, max=5.0) / snr)


def test_the_mean_loss_is_the_part_of_the_error_each_channels_image_mean_carries():
    """--mean-loss-weight: a constant offset of a channel counts in full, a zero-mean pattern not at all."""
    target = torch.randn(2, 4, 8, 8)
    offset = torch.tensor([[0.5, 0, 0, 0], [0, 0, 0, -1.0]]).view(2, 4, 1, 1)
    pattern = torch.randn(2, 4, 8, 8)
    pattern = pattern - pattern.mean(dim=(2, 3), keepdim=True)
    error = channel_mean_error(target + offset + pattern, target)
    assert torch.allclose(error, torch.tensor([0.25 / 4, 1.0 / 4]), atol=1e-6)
    # the plain loss already holds it once: a pixel's squared error is its mean's plus its deviation's
    plain = ((offset + pattern) ** 2).mean(dim=(1, 2, 3))
    assert torch.allclose(plain, error + (pattern ** 2).mean(dim=(1, 2, 3)), atol=1e-5)


def test_mean_loss_from_counts_only_the_samples_at_or_above_that_timestep():
    """--mean-loss-from T: a sample below T adds nothing, one at or above T its weighted error."""
    target = torch.zeros(3, 4, 8, 8)
    pred = torch.ones(3, 4, 8, 8) * torch.tensor([1.0, 2.0, 3.0]).view(3, 1, 1, 1)   # errors 1, 4, 9
    weights = torch.tensor([1.0, 0.5, 2.0])
    t = torch.tensor([599, 600, 999])
    assert mean_loss(pred, target, weights, t, 600).item() == pytest.approx((0 + 4 * 0.5 + 9 * 2.0) / 3)
    assert mean_loss(pred, target, weights, t, 0).item() == pytest.approx((1 + 4 * 0.5 + 9 * 2.0) / 3)
    assert mean_loss(pred, target, weights, t, 1000).item() == 0.0
    # the mask stops the gradient too: a sample below T gets none
    pred.requires_grad_(True)
    mean_loss(pred, target, weights, t, 600).backward()
    assert pred.grad[0].abs().max().item() == 0.0 and pred.grad[1].abs().min().item() > 0


def test_vae_reuse_needs_the_same_vae_recipe_and_keeps_its_time(tmp_path):
    from training import train_demo

    args = train_demo.parse_args(["--seed", "0"])
    unet, vae, text_encoder = train_demo.build_models(0)
    opt_vae = torch.optim.AdamW(vae.parameters(), lr=1e-3)
    earlier = {"args": {**vars(args), "vae_lr": 1e-3}, "vae": vae.state_dict(), "opt_vae": opt_vae.state_dict(),
               "state": {"phase": "done", "scaling_factor": 0.2, "vae_rec_l1": 3.0}}
    path = tmp_path / "checkpoint.pt"
    torch.save(earlier, path)
    with pytest.raises(ValueError, match="vae_lr"):
        train_demo.reuse_vae(args, path, vae, opt_vae)
    earlier["args"]["vae_lr"] = args.vae_lr
    torch.save(earlier, path)
    (tmp_path / "losses.csv").write_text("vae,0,0.1,5.0,0.4\nvae,1199,0.01,3.5,402.5\nunet,0,1.0,1.0,404.0\n")
    state = train_demo.reuse_vae(args, path, vae, opt_vae)
    assert (state["phase"], state["step"], state["elapsed"], state["scaling_factor"]) == ("unet", 0, 402.5, 0.2)


def test_a_rescaled_training_schedule_is_written_to_the_family_config_and_cleared_again(tmp_path, monkeypatch):
    import json
    import shutil

    from training import train_demo

    config_path = tmp_path / "scheduler_config.json"
    shutil.copy(train_demo.SCHEDULER_CONFIG, config_path)
    original = config_path.read_text()
    monkeypatch.setattr(train_demo, "SCHEDULER_CONFIG", config_path)
    train_demo.write_family_schedule(0.03)
    betas = torch.tensor(json.loads(config_path.read_text())["trained_betas"], dtype=torch.float64)
    assert torch.allclose(torch.cumprod(1 - betas, 0).float(), train_demo.training_alphas_cumprod(False, 0.03))
    # training reads SD1's schedule underneath, not the betas a previous run wrote
    assert training_alphas_cumprod(False)[-1].sqrt().item() == pytest.approx(0.0684, abs=1e-3)
    train_demo.write_family_schedule(None)
    assert config_path.read_text() == original


def test_terminal_signal_and_zero_terminal_snr_exclude_each_other():
    from training import train_demo

    with pytest.raises(SystemExit):
        train_demo.parse_args(["--terminal-signal", "0.02", "--zero-terminal-snr"])
    assert train_demo.parse_args(["--terminal-signal", "0.02"]).terminal_signal == 0.02


def test_vae_reuse_from_a_model_file_loads_its_vae_and_scaling_factor(tmp_path):
    """--vae-from MODEL.safetensors: another seed's U-Net phase on the shipped model's VAE."""
    from modules.checkpoint_export import export_original_checkpoint
    from training import train_demo

    unet, vae, text_encoder = train_demo.build_models(0)
    path = export_original_checkpoint(unet, vae, text_encoder, tmp_path / "model.safetensors")
    _, fresh_vae, _ = train_demo.build_models(1)
    state = train_demo.reuse_vae_of_model(path, fresh_vae)
    for name, tensor in vae.state_dict().items():
        assert torch.equal(fresh_vae.state_dict()[name], tensor), name
    family_factor = json.loads((train_demo.CONFIG_DIR / "vae" / "config.json").read_text())["scaling_factor"]
    assert (state["phase"], state["step"], state["elapsed"]) == ("unet", 0, 0.0)
    assert state["scaling_factor"] == pytest.approx(family_factor) and state["vae_rec_l1"] > 0


def _tiny_run_args(tmp_path, monkeypatch, *extra: str) -> list[str]:
    """train_demo arguments for a run of a few 2-image steps with a checkpoint after every step."""
    from modules import malloc_tuning
    from training import train_demo

    monkeypatch.setattr(train_demo, "measure_vae", lambda vae, seed: (0.25, 1.0))   # 128 images: too slow here
    # run() tunes glibc malloc for the whole process: not for the test process, which runs the other tests
    monkeypatch.setattr(malloc_tuning, "keep_freed_memory", lambda large_blocks_too=False: False)
    return ["--out", str(tmp_path), "--export", "", "--threads", str(torch.get_num_threads()), "--batch-size", "2",
            "--vae-steps", "2", "--vae-full-steps", "1", "--vae-batch-size", "2", "--vae-full-batch-size", "2",
            "--checkpoint-minutes", "0", *extra]


def _interrupt_unet_step(monkeypatch, at_call: int, calls: list):
    """Make train_demo.unet_step raise KeyboardInterrupt on its at_call-th call (1-based), appending
    whether each call was given a grounding; returns the real function to put back."""
    from training import train_demo

    real_step = train_demo.unet_step

    def interrupted(*a, **kw):
        calls.append(a[-2] is not None)            # grounding: (TokenGrounding, maps, weight) or None
        if len(calls) == at_call:
            raise KeyboardInterrupt
        return real_step(*a, **kw)

    monkeypatch.setattr(train_demo, "unet_step", interrupted)
    return real_step


def test_a_tiny_run_with_every_side_loss_resumes_after_an_interruption(tmp_path, monkeypatch):
    """Each classifier's weights and each side loss's column survive a checkpoint, and a rerun
    continues the run."""
    from training import train_demo
    from training.caption_heads import SIDE_HEADS

    args = _tiny_run_args(tmp_path, monkeypatch, "--unet-steps", "3", "--noun-colour-weight", "0.1",
                          "--noun-identity-weight", "0.1", "--grounding-weight", "0.02", "--ground-background",
                          "--padding-weight", "0.02", "--padding-target", "colourless", "--mean-loss-weight", "1")
    real_step = _interrupt_unet_step(monkeypatch, 2, [])
    with pytest.raises(KeyboardInterrupt):
        train_demo.run(train_demo.parse_args(args))
    checkpoint = torch.load(tmp_path / "checkpoint.pt", weights_only=False)
    assert (checkpoint["state"]["phase"], checkpoint["state"]["step"]) == ("unet", 1)
    assert all(spec.checkpoint_key in checkpoint for spec in SIDE_HEADS)

    monkeypatch.setattr(train_demo, "unet_step", real_step)
    train_demo.run(train_demo.parse_args(args))   # loads every classifier's weights, runs steps 1 and 2
    rows = [line.split(",") for line in (tmp_path / "losses.csv").read_text().splitlines() if line.startswith("unet")]
    assert [row[1] for row in rows] == ["0", "1", "2"]
    # caption, noun colour, noun identity, grounding, padding, mean
    assert all(len(row) == 5 + len(SIDE_HEADS) + 3 for row in rows)
    assert all(0 <= float(row[-3]) <= 1 and float(row[-2]) >= 0 and float(row[-1]) > 0 for row in rows)
    assert (tmp_path / "final" / "unet").is_dir()


def test_a_grounding_phase_follows_the_unet_phase_and_resumes_inside_it(tmp_path, monkeypatch):
    """--grounding-steps: the U-Net phase trains without the grounding loss, then a 'ground' phase
    trains with it; an interruption inside that phase resumes there, and the loss plot reads both."""
    from training import loss_plot, train_demo

    args = _tiny_run_args(tmp_path, monkeypatch, "--unet-steps", "2", "--noun-colour-weight", "0",
                          "--grounding-weight", "0.02", "--grounding-steps", "2")
    calls = []
    real_step = _interrupt_unet_step(monkeypatch, 4, calls)
    with pytest.raises(KeyboardInterrupt):
        train_demo.run(train_demo.parse_args(args))
    assert calls == [False, False, True, True]
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=False)["state"]
    assert (state["phase"], state["step"]) == ("ground", 1)

    monkeypatch.setattr(train_demo, "unet_step", real_step)
    train_demo.run(train_demo.parse_args(args))
    rows = [line.split(",") for line in (tmp_path / "losses.csv").read_text().splitlines() if line[0] in "ug"]
    assert [(row[0], row[1]) for row in rows] == [("unet", "0"), ("unet", "1"), ("ground", "0"), ("ground", "1")]
    # phase, step, loss, raw loss, seconds, caption loss; the grounding column only where it was trained
    assert [len(row) for row in rows] == [6, 6, 7, 7]
    assert [step for step, _ in loss_plot.read_losses(tmp_path / "losses.csv")["unet"]] == [0, 1, 2, 3]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert (summary["grounding_steps"], summary["unet_steps"]) == (2, 2)


def test_a_run_stopped_at_the_grounding_switch_and_resumed_without_grounding_ends_as_a_run_without_it(
        tmp_path, monkeypatch):
    """The U-Net phase is the same with or without a grounding phase after it, so a checkpoint written
    at the switch, resumed by the command without --grounding-steps, finishes that command's run."""
    from safetensors.torch import load_file

    from training import train_demo

    common = ("--unet-steps", "2", "--noun-colour-weight", "0")
    stopped = _tiny_run_args(tmp_path / "stopped", monkeypatch, *common, "--grounding-weight", "0.02",
                             "--grounding-steps", "2")
    real_step = _interrupt_unet_step(monkeypatch, 3, [])          # the first grounding step
    with pytest.raises(KeyboardInterrupt):
        train_demo.run(train_demo.parse_args(stopped))
    state = torch.load(tmp_path / "stopped" / "checkpoint.pt", weights_only=False)["state"]
    assert (state["phase"], state["step"]) == ("ground", 0)
    monkeypatch.setattr(train_demo, "unet_step", real_step)
    train_demo.run(train_demo.parse_args(_tiny_run_args(tmp_path / "stopped", monkeypatch, *common)))
    train_demo.run(train_demo.parse_args(_tiny_run_args(tmp_path / "straight", monkeypatch, *common)))

    weights = [load_file(tmp_path / run / "final" / "unet" / "diffusion_pytorch_model.safetensors")
               for run in ("stopped", "straight")]
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    summaries = [json.loads((tmp_path / run / "summary.json").read_text()) for run in ("stopped", "straight")]
    assert summaries[0]["final_unet_loss"] == pytest.approx(summaries[1]["final_unet_loss"], abs=1e-4)


def test_vae_seed_trains_the_vae_of_that_seed_and_the_unet_of_the_run_seed(tmp_path, monkeypatch):
    """--seed 1 --vae-seed 0 trains the VAE a --seed 0 run trains, bit for bit, and a VAE of seed 0
    can be reused by a --seed 1 run only when it asks for --vae-seed 0."""
    from safetensors.torch import load_file

    from training import train_demo

    common = ("--unet-steps", "1", "--noun-colour-weight", "0")
    runs = {"seed0": ("--seed", "0"), "seed1": ("--seed", "1"), "seed1-vae0": ("--seed", "1", "--vae-seed", "0")}
    for name, seeds in runs.items():
        train_demo.run(train_demo.parse_args(_tiny_run_args(tmp_path / name, monkeypatch, *common, *seeds)))

    def weights(name, part):
        folder = tmp_path / name / "final" / part
        return load_file(next(folder.glob("*.safetensors")))

    def same(a, b):
        return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

    assert same(weights("seed1-vae0", "vae"), weights("seed0", "vae"))
    assert not same(weights("seed1", "vae"), weights("seed0", "vae"))
    assert not same(weights("seed1-vae0", "unet"), weights("seed0", "unet"))
    assert json.loads((tmp_path / "seed1-vae0" / "summary.json").read_text())["vae_seed"] == 0

    vae = train_demo.build_models(0)[1]
    opt_vae = torch.optim.AdamW(vae.parameters())
    seed0 = tmp_path / "seed0" / "checkpoint.pt"
    tiny = _tiny_run_args(tmp_path / "x", monkeypatch)      # the seed 0 run's VAE arguments
    with pytest.raises(ValueError, match=r"different VAE recipe \(vae_seed\)"):
        train_demo.reuse_vae(train_demo.parse_args(["--seed", "1", *tiny]), seed0, vae, opt_vae)
    state = train_demo.reuse_vae(train_demo.parse_args(["--seed", "1", "--vae-seed", "0", *tiny]), seed0, vae, opt_vae)
    assert state["phase"] == "unet"


def test_a_grounding_phase_needs_a_grounding_weight():
    from training import train_demo

    with pytest.raises(SystemExit):
        train_demo.parse_args(["--grounding-steps", "100"])


def test_exclusive_grounding_refuses_a_background_it_cannot_ground(capsys):
    from training import train_demo

    with pytest.raises(SystemExit):
        train_demo.parse_args(["--grounding-weight", "0.05", "--grounding-mode", "exclusive", "--ground-background"])
    assert "drop --ground-background" in capsys.readouterr().err
    args = train_demo.parse_args(["--grounding-weight", "0.05", "--grounding-mode", "exclusive"])
    assert args.grounding_mode == "exclusive"


def test_init_from_a_model_file_starts_the_unet_and_text_encoder_there(tmp_path, monkeypatch):
    """--init-from MODEL: a fine-tuning probe begins at that model's weights, not at random ones."""
    from modules.checkpoint_export import export_original_checkpoint
    from training import train_demo

    unet, vae, text_encoder = train_demo.build_models(7)
    path = export_original_checkpoint(unet, vae, text_encoder, tmp_path / "model.safetensors")
    fresh_unet, _, fresh_text = train_demo.build_models(1)
    train_demo.init_from_model(path, fresh_unet, fresh_text)
    for mine, theirs in ((fresh_unet, unet), (fresh_text, text_encoder)):
        for name, tensor in theirs.state_dict().items():
            assert torch.equal(mine.state_dict()[name], tensor), name
    with pytest.raises(SystemExit):
        train_demo.parse_args(["--init-from", str(path)])      # without --vae-from it would train a new VAE under it

    args = _tiny_run_args(tmp_path / "run", monkeypatch, "--unet-steps", "1", "--noun-colour-weight", "0",
                          "--vae-from", str(path), "--init-from", str(path), "--lr", "0")
    train_demo.run(train_demo.parse_args(args))
    # learning rate 0: the saved EMA weights are the file's own (fp16 in the file, so compare loosely)
    from diffusers import UNet2DConditionModel

    saved = UNet2DConditionModel.from_pretrained(tmp_path / "run" / "final" / "unet").state_dict()
    for name, tensor in unet.state_dict().items():
        assert torch.allclose(saved[name], tensor, atol=2e-3, rtol=1e-2), name


def test_two_object_options_change_the_share_and_the_layout():
    from training.shapes_dataset import POSITIONS, ShapesDataset

    default, explicit = ShapesDataset(seed=3), ShapesDataset(seed=3, two_object_share=0.2, two_object_layout="either")
    assert [default.sample(i).caption for i in range(40)] == [explicit.sample(i).caption for i in range(40)]
    pairs = [s for s in (ShapesDataset(seed=3).sample(i) for i in range(300)) if len(s.objects) == 2]
    assert {s.objects[0].position for s in pairs} == {"left", "top"}     # either: both layouts occur

    side = ShapesDataset(seed=3, two_object_share=1.0, two_object_layout="side-by-side")
    samples = [side.sample(i) for i in range(60)]
    assert all(len(s.objects) == 2 for s in samples)
    for s in samples:
        first, second = s.objects
        assert (first.position, second.position) == ("left", "right")
        assert s.caption.startswith(f"a {first.colour} {first.shape} and a {second.colour} {second.shape}")
        assert first.centre[0] < POSITIONS["center"][0] < second.centre[0]
    with pytest.raises(ValueError, match="two_object_layout"):
        ShapesDataset(two_object_layout="stacked")
    with pytest.raises(ValueError, match="two_object_share"):
        ShapesDataset(two_object_share=1.5)


def test_auto_precision_uses_bf16_only_where_the_device_computes_it(monkeypatch):
    from modules import devices
    from training import train_demo

    cpu = torch.device("cpu")
    for avx512_bf16, amx, expected in ((True, False, "bf16"), (False, True, "bf16"), (False, False, "fp32")):
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda v=avx512_bf16: v)
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda v=amx: v)
        assert devices.native_bf16(cpu) == (expected == "bf16")
        assert train_demo.training_precision("auto", cpu) == expected
        # an explicit choice is kept whatever the hardware
        assert train_demo.training_precision("bf16", cpu) == "bf16"
        assert train_demo.training_precision("fp32", cpu) == "fp32"
    # GPUs: bf16 tensor cores from Ampere (compute capability 8.0) on; a Turing card emulates it
    for capability, expected in (((8, 0), "bf16"), ((9, 0), "bf16"), ((7, 5), "fp32")):
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None, v=capability: v)
        assert train_demo.training_precision("auto", torch.device("cuda")) == expected


@pytest.mark.parametrize("precision, autocast_on", [("fp32", False), ("bf16", True)])
def test_the_precision_decides_whether_the_unet_trains_under_bf16_autocast(tmp_path, monkeypatch,
                                                                           precision, autocast_on):
    from training import train_demo

    seen = []
    real_build = train_demo.build_models

    def build_and_watch(seed):
        unet, vae, text_encoder = real_build(seed)
        unet.register_forward_hook(lambda m, i, o: seen.append(torch.is_autocast_enabled("cpu")))
        return unet, vae, text_encoder

    monkeypatch.setattr(train_demo, "build_models", build_and_watch)
    args = _tiny_run_args(tmp_path, monkeypatch, "--unet-steps", "1", "--noun-colour-weight", "0",
                          "--precision", precision)
    train_demo.run(train_demo.parse_args(args))
    assert seen and set(seen) == {autocast_on}
    assert json.loads((tmp_path / "summary.json").read_text())["precision"] == precision
