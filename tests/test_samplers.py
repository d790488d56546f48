import pytest
import torch
from diffusers import DPMSolverMultistepScheduler, EulerAncestralDiscreteScheduler, EulerDiscreteScheduler

from modules import samplers

torch.set_num_threads(1)

# The scheduler config an SD1 checkpoint ships with (PNDM, scaled-linear betas).
SD1_CONFIG = {
    "_class_name": "PNDMScheduler",
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "num_train_timesteps": 1000,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "trained_betas": None,
    "clip_sample": False,
    "prediction_type": "epsilon",
    "timestep_spacing": "leading",
}


def run_two_steps(scheduler, seed=0):
    scheduler.set_timesteps(2)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(1, 4, 8, 8, generator=g) * scheduler.init_noise_sigma
    eps_model = lambda x_in, t: 0.5 * x_in  # a dummy noise predictor
    kwargs = {"generator": torch.Generator().manual_seed(seed + 1)} if samplers.step_accepts_generator(scheduler) else {}
    for t in scheduler.timesteps:
        model_in = scheduler.scale_model_input(x, t)
        x = scheduler.step(eps_model(model_in, t), t, x, **kwargs).prev_sample
    return x


@pytest.mark.parametrize("name", [s.name for s in samplers.SAMPLERS])
def test_every_sampler_runs_two_steps_with_finite_output(name):
    out = run_two_steps(samplers.create_scheduler(name, "automatic", SD1_CONFIG, 2, seeds=[1]))
    assert out.shape == (1, 4, 8, 8)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", [s.name for s in samplers.SAMPLERS])
def test_every_supported_schedule_of_every_sampler_runs(name):
    info = [s for s in samplers.SAMPLERS if s.name == name][0]
    for schedule in info.supported_schedules():
        out = run_two_steps(samplers.create_scheduler(name, schedule.id, SD1_CONFIG, 2, seeds=[1]))
        assert torch.isfinite(out).all(), schedule.label


def test_required_a1111_names_are_offered():
    names = {s.name for s in samplers.SAMPLERS}
    for required in ["Euler a", "Euler", "LMS", "Heun", "DPM2", "DPM2 a", "DPM++ 2S a", "DPM++ 2M", "DPM++ SDE",
                     "DPM++ 2M SDE", "DPM++ 3M SDE", "DDIM", "PLMS", "UniPC", "LCM"]:
        assert required in names
    ids = {s.id for s in samplers.SCHEDULES}
    assert {"automatic", "uniform", "karras", "exponential", "sgm_uniform", "beta", "simple", "normal", "ddim"} <= ids


def test_reference_pipeline_schedulers_are_reproduced_exactly():
    """The lead's end-to-end test compares against these plain diffusers schedulers."""
    pairs = [
        ("Euler", EulerDiscreteScheduler.from_config(SD1_CONFIG)),
        ("Euler a", EulerAncestralDiscreteScheduler.from_config(SD1_CONFIG)),
        ("DPM++ 2M Karras", DPMSolverMultistepScheduler.from_config(SD1_CONFIG, use_karras_sigmas=True)),
    ]
    for name, expected in pairs:
        got = samplers.create_scheduler(name, None, SD1_CONFIG, 20)
        assert type(got) is type(expected)
        public = lambda config: {k: v for k, v in config.items() if not k.startswith("_")}
        assert public(got.config) == public(expected.config), name
        got.set_timesteps(20)
        expected.set_timesteps(20)
        assert torch.equal(got.timesteps, expected.timesteps)
        assert torch.allclose(got.sigmas, expected.sigmas)


def test_model_config_is_kept():
    v_config = {**SD1_CONFIG, "prediction_type": "v_prediction", "beta_schedule": "linear"}
    sched = samplers.create_scheduler("DPM++ 2M", "karras", v_config, 20)
    assert sched.config.prediction_type == "v_prediction"
    assert sched.config.beta_schedule == "linear"
    assert sched.config.use_karras_sigmas is True


@pytest.mark.parametrize("given,scheduler,expected", [
    ("Euler a", None, ("Euler a", "automatic")),
    ("euler A", "AUTOMATIC", ("Euler a", "automatic")),
    ("DPM++ 2M Karras", None, ("DPM++ 2M", "karras")),
    ("DPM++ 2M Karras", "automatic", ("DPM++ 2M", "karras")),
    ("dpm++ 2m sde exponential", None, ("DPM++ 2M SDE", "exponential")),
    ("DPM++ 2M SDE Heun Karras", None, ("DPM++ 2M SDE Heun", "karras")),
    ("DPM++ 2M", "Karras", ("DPM++ 2M", "karras")),
    ("DPM++ 2M", "sgm_uniform", ("DPM++ 2M", "sgm_uniform")),
    ("Euler", "SGM Uniform", ("Euler", "sgm_uniform")),
    ("k_euler_a", None, ("Euler a", "automatic")),
    ("k_dpmpp_2m", "", ("DPM++ 2M", "automatic")),
    ("sample_dpm_2_ancestral", None, ("DPM2 a", "automatic")),
])
def test_names_resolve(given, scheduler, expected):
    sampler, schedule = samplers.resolve(given, scheduler)
    assert (sampler.name, schedule.id) == expected


def test_automatic_uses_the_a1111_defaults():
    def applied(name):
        sampler, schedule = samplers.resolve(name, "automatic")
        eff = samplers.effective_schedule(sampler, schedule)
        return eff.id if eff else None
    for name in ["DPM++ 2M", "DPM++ SDE", "DPM2", "DPM2 a", "DPM++ 2S a"]:
        assert applied(name) == "karras"
    for name in ["DPM++ 2M SDE", "DPM++ 3M SDE"]:
        assert applied(name) == "exponential"
    assert applied("Euler") is None
    assert samplers.create_scheduler("DPM++ 3M SDE", "automatic", SD1_CONFIG, 5).config.use_exponential_sigmas


def test_explicit_schedule_switches_other_sigma_flags_off():
    karras_config = {**SD1_CONFIG, "use_karras_sigmas": True}
    sched = samplers.create_scheduler("Euler", "exponential", karras_config, 5)
    assert sched.config.use_exponential_sigmas and not sched.config.use_karras_sigmas


def test_bad_sampler_name_lists_the_choices():
    with pytest.raises(ValueError) as err:
        samplers.resolve("Euler b")
    assert "Euler b" in str(err.value) and "DPM++ 2M" in str(err.value) and "UniPC" in str(err.value)


def test_bad_schedule_lists_the_choices():
    with pytest.raises(ValueError) as err:
        samplers.resolve("Euler", "wobbly")
    assert "wobbly" in str(err.value) and "Karras (karras)" in str(err.value)


def test_unsupported_a1111_names_say_so():
    with pytest.raises(ValueError, match="does not offer"):
        samplers.resolve("DPM adaptive")
    with pytest.raises(ValueError, match="not available"):
        samplers.resolve("Euler", "Align Your Steps")


def test_schedule_a_class_cannot_do_is_refused():
    # diffusers' EulerAncestralDiscreteScheduler has no Karras sigmas.
    with pytest.raises(ValueError, match="Euler a"):
        samplers.resolve("Euler a", "karras")


def test_contradicting_schedule_is_refused():
    with pytest.raises(ValueError, match="contradicts"):
        samplers.resolve("DPM++ 2M Karras", "exponential")


def test_dpmpp_sde_needs_seeds_and_is_reproducible_per_image():
    with pytest.raises(ValueError, match="seeds"):
        samplers.create_scheduler("DPM++ SDE", None, SD1_CONFIG, 4)

    def run(seeds):
        sched = samplers.create_scheduler("DPM++ SDE", None, SD1_CONFIG, 3, seeds=seeds)
        sched.set_timesteps(3)
        x = torch.ones(len(seeds), 4, 8, 8) * sched.init_noise_sigma
        for t in sched.timesteps:
            x = sched.step(0.5 * sched.scale_model_input(x, t), t, x).prev_sample
        return x

    batch = run([7, 8])
    assert torch.allclose(batch[1], run([8])[0], atol=1e-6)
    assert torch.allclose(batch, run([7, 8]))
    assert not torch.allclose(batch[0], batch[1])


def test_steps_must_be_positive():
    with pytest.raises(ValueError, match="steps"):
        samplers.create_scheduler("Euler", None, SD1_CONFIG, 0)
