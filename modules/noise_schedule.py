"""Rescaled noise schedules as explicit betas, so that every sampler class samples the schedule a model was trained on.

A model trained with zero terminal SNR (Lin et al. 2023, "Common Diffusion
Noise Schedules and Sample Steps are Flawed") saw pure noise at its last
timestep. ComfyUI marks such checkpoints with a ``ztsnr`` key; A1111 calls the
setting "Zero Terminal SNR". diffusers offers ``rescale_betas_zero_snr`` on only
some scheduler classes; the others (Heun, LMS, DPM2, PLMS, DPM++ SDE, DPM++ 2S a)
silently drop unknown config keys and would sample a schedule the model never
saw. Every class accepts ``trained_betas``, so Easel turns the rescaled
schedule into explicit betas once and hands those to whichever sampler runs.
The demo trainer's partial rescaling (`terminal_signal_alphas_cumprod`, which
keeps a little signal at the last step) travels the same way, as
``trained_betas`` in the family's scheduler config.
"""
from __future__ import annotations

import torch

# The last step's signal level: diffusers' choice (fp16's smallest subnormal) for
# ZTSNR schedules, so the first sigma is 4096 instead of infinite.
TERMINAL_ALPHA_CUMPROD = 2.0 ** -24


def base_betas(config: dict) -> torch.Tensor:
    """The betas a scheduler config describes (SD's scaled_linear, or linear), in float64."""
    n, start, end = config["num_train_timesteps"], config["beta_start"], config["beta_end"]
    if config.get("trained_betas") is not None:
        return torch.tensor(config["trained_betas"], dtype=torch.float64)
    schedule = config.get("beta_schedule", "scaled_linear")
    if schedule == "scaled_linear":
        return torch.linspace(start ** 0.5, end ** 0.5, n, dtype=torch.float64) ** 2
    if schedule == "linear":
        return torch.linspace(start, end, n, dtype=torch.float64)
    raise ValueError(f"beta_schedule {schedule!r} cannot be rescaled to zero terminal SNR (scaled_linear or linear)")


def terminal_signal_alphas_cumprod(config: dict, terminal_signal: float) -> torch.Tensor:
    """The config's schedule with sqrt(alpha-bar) shifted and scaled so the first step is unchanged and
    the last keeps `terminal_signal` of the image (SD1 keeps 0.068; 0 is Lin et al.'s rescaling)."""
    signal = torch.cumprod(1.0 - base_betas(config), dim=0).sqrt()
    first, last = signal[0].clone(), signal[-1].clone()
    if not 0.0 <= terminal_signal < first:
        raise ValueError(f"terminal_signal must be in [0, {float(first):.4f}), got {terminal_signal!r}")
    signal = (signal - last) * (first - terminal_signal) / (first - last) + terminal_signal
    return signal ** 2


def zero_terminal_snr_alphas_cumprod(config: dict) -> torch.Tensor:
    """Signal levels (alpha-bar) of the config's schedule rescaled to zero terminal SNR, last one 2**-24
    (the same schedule as diffusers' rescale_betas_zero_snr; tests/test_noise_schedule.py compares them)."""
    alphas_cumprod = terminal_signal_alphas_cumprod(config, 0.0)
    alphas_cumprod[-1] = TERMINAL_ALPHA_CUMPROD
    return alphas_cumprod


def betas_for(alphas_cumprod: torch.Tensor) -> list[float]:
    """The betas whose cumulative product of (1 - beta) is `alphas_cumprod`."""
    previous = torch.cat([torch.ones(1, dtype=alphas_cumprod.dtype), alphas_cumprod[:-1]])
    return (1.0 - alphas_cumprod / previous).tolist()


def with_zero_terminal_snr(config: dict) -> dict:
    """A copy of a scheduler config whose ``trained_betas`` carry the zero-terminal-SNR schedule."""
    resolved = {k: v for k, v in config.items() if k != "rescale_betas_zero_snr"}
    resolved["trained_betas"] = betas_for(zero_terminal_snr_alphas_cumprod(config))
    return resolved
