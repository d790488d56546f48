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
class StepConditioning:
    """What the U-Net is conditioned on at one step, for a batch of B images.

    `conds` holds every AND sub-prompt of every image (N rows); `weights[b]`
    lists image b's (row in conds, weight) pairs. Guidance for image b is
    uncond_b + cfg * sum_k w_k * (cond_k - uncond_b) (composable diffusion);
    one sub-prompt of weight 1 is plain classifier-free guidance.
    """
    uncond: torch.Tensor                 # (B, T, D)
    conds: torch.Tensor                  # (N, T, D), same T
    weights: list                        # B lists of (row, weight)
    added_cond: dict | None = None       # SDXL: {"text_embeds": (B+N, D2), "time_ids": (B+N, 6)} rows uncond, conds

    @property
    def is_plain(self) -> bool:
        """One sub-prompt of weight 1 per image, image b on row b: plain CFG, as diffusers' pipelines do it."""
        return all(len(w) == 1 and w[0] == (b, 1.0) for b, w in enumerate(self.weights)) \
            and self.conds.shape[0] == len(self.weights)


@dataclass
class SamplingRequest:
    noise: torch.Tensor                  # (B, C, h, w), unit variance, drawn on CPU
    cond: torch.Tensor | None            # (B, T, D); None when cond_at is given
    uncond: torch.Tensor | None          # (B, T, D), same T
    cfg_scale: float
    added_cond: dict | None = None       # SDXL: {"text_embeds": (2B, D2), "time_ids": (2B, 6)} ordered uncond, cond
    generators: list | None = None       # per-image CPU generators for ancestral noise
    eta: float | None = None
    # Per-step conditioning (prompt editing, alternation, AND): step (0-based user step, 0..steps-1) ->
    # StepConditioning. Return the same object while nothing changes; it is prepared once per object.
    cond_at: Callable[[int], StepConditioning] | None = None
    steps: int | None = None             # the user's step count, to map scheduler steps to it
    # img2img / inpainting / hires fix (modules/img2img.py): start from these latents (already noised to the
    # first timestep) and run only `timesteps` (the tail of the schedule) instead of noise over all steps.
    init_latents: torch.Tensor | None = None
    timesteps: torch.Tensor | None = None
    # Inpainting checkpoints: extra U-Net input channels (B, 5, h, w) = mask + masked-image latents,
    # appended after scale_model_input, as diffusers' StableDiffusionInpaintPipeline does.
    concat_latents: torch.Tensor | None = None
    # after_step(index, latents) -> latents, after each scheduler step (inpainting's latent blending).
    after_step: Callable[[int, torch.Tensor], torch.Tensor] | None = None

    def conditioning_at(self, step: int) -> StepConditioning:
        if self.cond_at is not None:
            return self.cond_at(step)
        if getattr(self, "_fixed", None) is None:
            batch = self.cond.shape[0]
            self._fixed = StepConditioning(self.uncond, self.cond, [[(b, 1.0)] for b in range(batch)], self.added_cond)
        return self._fixed


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
           cfg_denoiser_hook: Callable | None = None, before_denoise: Callable | None = None) -> torch.Tensor:
    """Run the scheduler's timesteps; returns final latents (B, C, h, w) on `device`.

    `on_step(index, total, predicted_x0)` runs after every scheduler step and
    may raise StopSampling to end early (the latents so far are returned).
    Each step runs one batched U-Net call over the negative prompts and all
    sub-prompts of the step's conditioning (request.conditioning_at).
    """
    if request.init_latents is not None:
        latents = request.init_latents.to(device, torch.float32)
    else:
        latents = (request.noise.to(device, torch.float32) * scheduler.init_noise_sigma)
    step_kwargs = _step_kwargs(scheduler, request)
    timesteps = scheduler.timesteps if request.timesteps is None else request.timesteps
    extra = request.concat_latents.to(device, torch.float32) if request.concat_latents is not None else None
    steps = request.steps or len(timesteps)
    prepared, prepared_for = None, None
    for index, t in enumerate(timesteps):
        # multi-call samplers (Heun, DPM2) run ~2 scheduler steps per user step
        conditioning = request.conditioning_at(min(steps - 1, index * steps // len(timesteps)))
        if conditioning is not prepared_for:
            prepared, prepared_for = _prepare(conditioning, request.cfg_scale, device, dtype), conditioning
        embeds, added, rows, use_uncond = prepared
        if before_denoise is not None: latents = before_denoise(index, len(timesteps), latents, t, conditioning)  # on_cfg_denoiser
        model_input = torch.cat([latents[rows]] if not use_uncond else [latents, latents[rows]])
        model_input = scheduler.scale_model_input(model_input, t)
        if extra is not None:
            model_input = torch.cat([model_input, torch.cat([extra[rows]] if not use_uncond else [extra, extra[rows]])],
                                    dim=1)
        out = unet(model_input.to(dtype), t, encoder_hidden_states=embeds,
                   added_cond_kwargs=added, return_dict=False)[0].float()
        out = _guidance(out, conditioning, request.cfg_scale, use_uncond)
        if cfg_denoiser_hook is not None:
            out = cfg_denoiser_hook(index, out)
        step_output = scheduler.step(out, t, latents, **step_kwargs, return_dict=True)
        latents = step_output.prev_sample
        if request.after_step is not None:
            latents = request.after_step(index, latents)
        if on_step is not None:
            try:
                on_step(index, len(timesteps), predicted_original(scheduler, step_output, latents))
            except StopSampling:
                break
    return latents


def _prepare(conditioning: StepConditioning, cfg_scale: float, device, dtype):
    """(U-Net embeds, added cond, image index of each cond row, whether uncond rows are run) for one conditioning."""
    rows = [0] * conditioning.conds.shape[0]
    for image, pairs in enumerate(conditioning.weights):
        for row, _ in pairs:
            rows[row] = image
    # with cfg 1 and plain prompts the negative prompt cancels out: skip it, as diffusers does
    use_uncond = cfg_scale != 1.0 or not conditioning.is_plain
    parts = [conditioning.uncond, conditioning.conds] if use_uncond else [conditioning.conds]
    embeds = torch.cat(parts).to(device, dtype)
    added = _select_added(conditioning.added_cond, use_uncond, conditioning.uncond.shape[0], device, dtype)
    return embeds, added, torch.tensor(rows, dtype=torch.long, device=device), use_uncond


def _guidance(out: torch.Tensor, conditioning: StepConditioning, cfg_scale: float, use_uncond: bool) -> torch.Tensor:
    """Combine the batched U-Net outputs into one prediction per image."""
    if not use_uncond:
        return out
    batch = conditioning.uncond.shape[0]
    uncond_out, cond_out = out[:batch], out[batch:]
    if conditioning.is_plain:
        return uncond_out + cfg_scale * (cond_out - uncond_out)
    guided = []
    for image, pairs in enumerate(conditioning.weights):
        delta = None
        for row, weight in pairs:
            term = (cond_out[row] - uncond_out[image]) * (weight * cfg_scale)
            delta = term if delta is None else delta + term
        guided.append(uncond_out[image] + delta)
    return torch.stack(guided)


def _select_added(added: dict | None, use_uncond: bool, batch: int, device, dtype) -> dict | None:
    if added is None:
        return None
    moved = {k: v.to(device, dtype) for k, v in added.items()}
    if use_uncond:
        return moved
    return {k: v[batch:] for k, v in moved.items()}


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
