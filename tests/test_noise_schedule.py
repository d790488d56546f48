"""Zero terminal SNR: the rescaled schedule reaches every sampler, and a model trained on it samples right."""
import pytest
import torch
from diffusers import EulerDiscreteScheduler

from modules import noise_schedule, samplers
from tests.test_samplers import SD1_CONFIG

torch.set_num_threads(1)

ZTSNR_CONFIG = noise_schedule.with_zero_terminal_snr({**SD1_CONFIG, "prediction_type": "v_prediction",
                                                      "timestep_spacing": "trailing"})


def test_explicit_betas_are_diffusers_rescaled_schedule():
    ours = EulerDiscreteScheduler.from_config(ZTSNR_CONFIG).alphas_cumprod
    flagged = EulerDiscreteScheduler.from_config({**SD1_CONFIG, "rescale_betas_zero_snr": True}).alphas_cumprod
    assert torch.allclose(ours, flagged, rtol=1e-4, atol=1e-7)
    assert ours[-1].item() == pytest.approx(2.0 ** -24, rel=1e-3)


def test_rescaling_keeps_the_first_step_and_empties_the_last():
    base = torch.cumprod(1 - noise_schedule.base_betas(SD1_CONFIG), 0)
    rescaled = noise_schedule.zero_terminal_snr_alphas_cumprod(SD1_CONFIG)
    assert rescaled[0].item() == pytest.approx(base[0].item())
    assert base[-1].item() > 4e-3 and rescaled[-1].item() < 1e-7  # SD1 leaves 0.47% of the signal at t=999


def point_mass_v_model(target: torch.Tensor, alphas_cumprod: torch.Tensor):
    """The exact v-prediction model for data that is always `target`, on the schedule it was trained with.

    Samplers hand the model a scaled input; recover x_t = sqrt(a) x0 + sqrt(1-a) eps with the
    TRAINING schedule's a(t). A sampler that scaled with another schedule gets wrong answers."""
    log_sigmas = ((1 - alphas_cumprod.double()) / alphas_cumprod.double()).sqrt().log()

    def model(model_input, t):
        # Fractional timesteps (DPM2's midpoints) map to sigmas log-linearly, as the samplers map them.
        low = min(int(float(t)), len(log_sigmas) - 2)
        sigma = torch.lerp(log_sigmas[low], log_sigmas[low + 1], float(t) - low).exp()
        a = 1 / (1 + sigma ** 2)
        eps = (model_input.double() - a.sqrt() * target) / (1 - a).sqrt()
        return (a.sqrt() * eps - (1 - a).sqrt() * target).float()
    return model


def sample_point_mass(name: str, config: dict, alphas_cumprod: torch.Tensor) -> float:
    """Mean distance between the data and what `name` samples from the exact model of it (20 steps)."""
    target = torch.full((1, 4, 8, 8), 0.8, dtype=torch.float64)
    target[..., :4] = -0.6
    model = point_mass_v_model(target, alphas_cumprod)
    scheduler = samplers.create_scheduler(name, "automatic", config, 20, seeds=[3])
    samplers.set_full_schedule(scheduler, 20)
    assert (scheduler.alphas_cumprod[-1] - alphas_cumprod[-1]).abs().item() < 1e-6, "sampler got another schedule"
    x = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(3)) * scheduler.init_noise_sigma
    kwargs = {"generator": torch.Generator().manual_seed(4)} if samplers.step_accepts_generator(scheduler) else {}
    for t in scheduler.timesteps:
        x = scheduler.step(model(scheduler.scale_model_input(x, t), t), t, x, **kwargs).prev_sample
    return (x.double() - target).abs().mean().item()


@pytest.mark.parametrize("name", [s.name for s in samplers.SAMPLERS])
def test_every_sampler_lands_a_zero_terminal_snr_model_on_its_data(name):
    """As close as on SD1's own schedule. Heun, LMS, DPM2, PLMS and others ignore diffusers'
    rescale flag, and DPM2 repeats its first timestep there: both would miss by far."""
    sd1_config = {**SD1_CONFIG, "prediction_type": "v_prediction", "timestep_spacing": "trailing"}
    sd1_error = sample_point_mass(name, sd1_config, torch.cumprod(1 - noise_schedule.base_betas(SD1_CONFIG), 0))
    ztsnr_error = sample_point_mass(name, ZTSNR_CONFIG, noise_schedule.zero_terminal_snr_alphas_cumprod(SD1_CONFIG))
    # DDIM, PLMS and UniPC stop at the first training timestep, not at sigma 0: about 0.02 on both schedules.
    assert ztsnr_error <= 1.5 * sd1_error + 1e-3, (ztsnr_error, sd1_error)


def test_terminal_signal_rescaling_keeps_the_first_step_and_sets_the_last():
    base = torch.cumprod(1 - noise_schedule.base_betas(SD1_CONFIG), 0)
    assert torch.allclose(noise_schedule.terminal_signal_alphas_cumprod(SD1_CONFIG, float(base[-1].sqrt())), base)
    rescaled = noise_schedule.terminal_signal_alphas_cumprod(SD1_CONFIG, 0.02)
    assert rescaled[0].item() == pytest.approx(base[0].item()) and rescaled[-1].sqrt().item() == pytest.approx(0.02)
    assert bool((rescaled[1:] < rescaled[:-1]).all())  # still a noise schedule: signal falls at every step
    from diffusers.schedulers.scheduling_ddim import rescale_zero_terminal_snr

    zero = noise_schedule.terminal_signal_alphas_cumprod(SD1_CONFIG, 0.0)
    lin = torch.cumprod(1 - rescale_zero_terminal_snr(noise_schedule.base_betas(SD1_CONFIG)), 0)
    assert torch.allclose(zero[:-1], lin[:-1], rtol=1e-6)  # terminal signal 0 is Lin et al.'s rescaling
    with pytest.raises(ValueError, match="terminal_signal"):
        noise_schedule.terminal_signal_alphas_cumprod(SD1_CONFIG, 1.5)


def test_explicit_betas_of_a_rescaled_schedule_reach_a_sampler_that_has_no_rescale_flag():
    alphas = noise_schedule.terminal_signal_alphas_cumprod(SD1_CONFIG, 0.02)
    config = {**SD1_CONFIG, "trained_betas": noise_schedule.betas_for(alphas)}
    heun = samplers.create_scheduler("Heun", "automatic", config, 20)
    assert torch.allclose(heun.alphas_cumprod.double(), alphas, rtol=1e-4)
