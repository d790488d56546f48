"""The denoising loop: noise + conditioning + a diffusers scheduler -> latents.

It mirrors diffusers' StableDiffusionPipeline step for step (scale the model
input, one batched U-Net call for negative and positive conditioning,
classifier-free guidance, scheduler.step), so the same seed gives the same
latents as the plain pipeline. What is Easel's: interrupt/skip checks between
steps and a callback with the predicted clean latent for live previews.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch


@dataclass
class SamplingRequest:
    noise: torch.Tensor                  # (B, C, h, w), unit variance, drawn on CPU
    cond: torch.Tensor                   # (B, T, D)
    uncond: torch.Tensor                 # (B, T, D), same T
    cfg_scale: float
    added_cond: dict | None = None       # SDXL: {"text_embeds": (2B, D2), "time_ids": (2B, 6)} ordered uncond, cond
    generators: list | None = None       # per-image CPU generators for ancestral noise
    eta: float | None = None


class StopSampling(Exception):
    """Raised by the step callback to end sampling early; carries nothing."""


def predicted_original(scheduler, step_output, latents: torch.Tensor) -> torch.Tensor:
    """The scheduler's estimate of the clean latent after a step, for previews.

    Ancestral/Euler/DDIM-type schedulers return it; multistep solvers keep
    their last data prediction in `model_outputs`. Otherwise the current
    latents are the best cheap estimate.
    """
    x0 = getattr(step_output, "pred_original_sample", None)
    if x0 is not None:
        return x0
    outputs = getattr(scheduler, "model_outputs", None)
    if outputs and outputs[-1] is not None and getattr(scheduler.config, "algorithm_type", "").endswith("dpmsolver++"):
        return outputs[-1]
    return latents


@torch.inference_mode()
def sample(unet, scheduler, request: SamplingRequest, device, dtype,
           on_step: Callable[[int, int, torch.Tensor], None] | None = None,
           cfg_denoiser_hook: Callable | None = None) -> torch.Tensor:
    """Run the scheduler's timesteps; returns final latents (B, C, h, w) on `device`.

    `on_step(index, total, predicted_x0)` runs after every scheduler step and
    may raise StopSampling to end early (the latents so far are returned).
    """
    latents = (request.noise.to(device, torch.float32) * scheduler.init_noise_sigma)
    embeds = torch.cat([request.uncond, request.cond]).to(device, dtype)
    use_cfg = request.cfg_scale != 1.0
    if not use_cfg:
        embeds = request.cond.to(device, dtype)
    added = _select_added(request.added_cond, use_cfg, device, dtype)
    step_kwargs = _step_kwargs(scheduler, request)
    timesteps = scheduler.timesteps
    for index, t in enumerate(timesteps):
        model_input = torch.cat([latents] * 2) if use_cfg else latents
        model_input = scheduler.scale_model_input(model_input, t)
        out = unet(model_input.to(dtype), t, encoder_hidden_states=embeds,
                   added_cond_kwargs=added, return_dict=False)[0].float()
        if use_cfg:
            uncond_out, cond_out = out.chunk(2)
            out = uncond_out + request.cfg_scale * (cond_out - uncond_out)
        if cfg_denoiser_hook is not None:
            out = cfg_denoiser_hook(index, out)
        step_output = scheduler.step(out, t, latents, **step_kwargs, return_dict=True)
        latents = step_output.prev_sample
        if on_step is not None:
            try:
                on_step(index, len(timesteps), predicted_original(scheduler, step_output, latents))
            except StopSampling:
                break
    return latents


def _select_added(added: dict | None, use_cfg: bool, device, dtype) -> dict | None:
    if added is None:
        return None
    moved = {k: v.to(device, dtype) for k, v in added.items()}
    if use_cfg:
        return moved
    return {k: v.chunk(2)[1] for k, v in moved.items()}


def _step_kwargs(scheduler, request: SamplingRequest) -> dict:
    """Pass generator/eta only to schedulers whose step() takes them (as diffusers' pipelines do)."""
    import inspect

    params = inspect.signature(scheduler.step).parameters
    kwargs = {}
    if "generator" in params and request.generators is not None:
        kwargs["generator"] = request.generators if len(request.generators) > 1 else request.generators[0]
    if "eta" in params and request.eta is not None:
        kwargs["eta"] = request.eta
    return kwargs
