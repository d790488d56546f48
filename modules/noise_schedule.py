"""Zero terminal SNR as explicit betas, so that every sampler class samples the schedule a model was trained on.

A model trained with zero terminal SNR (Lin et al. 2023, "Common Diffusion
Noise Schedules and Sample Steps are Flawed") saw pure noise at its last
timestep. ComfyUI marks such checkpoints with a ``ztsnr`` key; A1111 calls the
setting "Zero Terminal SNR". diffusers offers ``rescale_betas_zero_snr`` on only
some scheduler classes; the others (Heun, LMS, DPM2, PLMS, DPM++ SDE, DPM++ 2S a)
silently drop unknown config keys and would sample a schedule the model never
saw. Every class accepts ``trained_betas``, so Easel turns the rescaled
schedule into explicit betas once and hands those to whichever sampler runs.
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


def zero_terminal_snr_alphas_cumprod(config: dict) -> torch.Tensor:
    """Signal levels (alpha-bar) of the config's schedule rescaled to zero terminal SNR, last one 2**-24."""
    from diffusers.schedulers.scheduling_ddim import rescale_zero_terminal_snr

    alphas_cumprod = torch.cumprod(1.0 - rescale_zero_terminal_snr(base_betas(config)), dim=0)
    alphas_cumprod[-1] = TERMINAL_ALPHA_CUMPROD
    return alphas_cumprod


def with_zero_terminal_snr(config: dict) -> dict:
    """A copy of a scheduler config whose ``trained_betas`` carry the zero-terminal-SNR schedule."""
    alphas_cumprod = zero_terminal_snr_alphas_cumprod(config)
    previous = torch.cat([torch.ones(1, dtype=alphas_cumprod.dtype), alphas_cumprod[:-1]])
    betas = 1.0 - alphas_cumprod / previous
    resolved = {k: v for k, v in config.items() if k != "rescale_betas_zero_snr"}
    resolved["trained_betas"] = betas.tolist()
    return resolved
