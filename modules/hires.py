"""Hires fix for txt2img: upscale the first pass, then run an img2img pass over it at the larger size.

Latent upscalers interpolate the latents (torch); pixel upscalers (Lanczos,
Nearest and the ESRGAN-family model files, modules/upscalers.py) decode,
upscale and encode again. The second pass is img2img over the
upscaled latents with fresh noise from the same seeds, `denoising_strength`
of the schedule, and exactly `hr_second_pass_steps` steps (default: the
first pass's), as A1111 runs it. Fields and infotext keys are A1111's.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from modules import samplers, upscalers

if TYPE_CHECKING:
    import torch

# torch and the modules that import it are imported inside the two sampling functions below:
# the txt2img page imports this module for its constants while it is built, before the page answers.

LATENT_UPSCALE_MODES = {            # name -> (torch interpolate mode, antialias)
    "Latent": ("bilinear", False),
    "Latent (antialiased)": ("bilinear", True),
    "Latent (bicubic)": ("bicubic", False),
    "Latent (bicubic antialiased)": ("bicubic", True),
    "Latent (nearest)": ("nearest", False),
    "Latent (nearest-exact)": ("nearest-exact", False),
}
DEFAULT_UPSCALER = "Latent"
DEFAULT_DENOISING = 0.7
MAX_HR_SCALE = 4.0
SAME_SAMPLER = "Use same sampler"


def upscaler_names() -> list[str]:
    """Every hires upscaler: the latent modes, then the pixel upscalers (model files read from disk now)."""
    return [*LATENT_UPSCALE_MODES, *upscalers.names()]


def upscaler_name(p) -> str:
    return p.hr_upscaler or DEFAULT_UPSCALER


def _floor8(value: float) -> int:
    return int(value) // 8 * 8


def target_size(p) -> tuple[int, int, int, int]:
    """(upscaled width, height, final width, height) of the second pass, multiples of 8.

    hr_resize_x/y of 0 mean "use hr_scale"; one of them alone keeps the
    aspect ratio; both upscale to cover that size and crop the centre.
    """
    x, y = int(p.hr_resize_x or 0), int(p.hr_resize_y or 0)
    if x == 0 and y == 0:
        w, h = _floor8(p.width * p.hr_scale), _floor8(p.height * p.hr_scale)
        return w, h, w, h
    if y == 0:
        w, h = _floor8(x), _floor8(x * p.height / p.width)
        return w, h, w, h
    if x == 0:
        w, h = _floor8(y * p.width / p.height), _floor8(y)
        return w, h, w, h
    if p.width * y < p.height * x:      # first pass narrower than the target: match widths
        up_w, up_h = _floor8(x), _floor8(x * p.height / p.width)
    else:
        up_w, up_h = _floor8(y * p.width / p.height), _floor8(y)
    return up_w, up_h, _floor8(x), _floor8(y)


def validate(p) -> None:
    """ValueError naming the hires field that is out of range (only when enable_hr)."""
    from modules.processing import MAX_SIDE, MAX_STEPS

    if not p.enable_hr:
        return
    name = upscaler_name(p)
    if name not in LATENT_UPSCALE_MODES:
        if name in upscalers.unavailable():
            upscalers.find(name, "hr_upscaler")     # raises, saying why the model file cannot be used
        if name not in upscalers.names():
            raise ValueError(f"hr_upscaler: unknown upscaler {name!r}; available: {', '.join(upscaler_names())}")
    if not 1.0 <= float(p.hr_scale) <= MAX_HR_SCALE:
        raise ValueError(f"hr_scale must be between 1 and {MAX_HR_SCALE:g}, got {p.hr_scale!r}")
    for name in ("hr_resize_x", "hr_resize_y"):
        value = getattr(p, name)
        if not isinstance(value, int) or not (value == 0 or 64 <= value <= MAX_SIDE):
            raise ValueError(f"{name} must be 0 (use hr_scale) or between 64 and {MAX_SIDE}, got {value!r}")
    if not isinstance(p.hr_second_pass_steps, int) or not 0 <= p.hr_second_pass_steps <= MAX_STEPS:
        raise ValueError(f"hr_second_pass_steps must be between 0 (same as steps) and {MAX_STEPS}, "
                         f"got {p.hr_second_pass_steps!r}")
    if p.denoising_strength is not None and not 0.0 <= float(p.denoising_strength) <= 1.0:
        raise ValueError(f"denoising_strength must be between 0 and 1, got {p.denoising_strength!r}")
    if p.hr_sampler_name and p.hr_sampler_name != SAME_SAMPLER:
        try:
            samplers.resolve(p.hr_sampler_name, p.scheduler)
        except ValueError as exc:
            raise ValueError(f"hr_sampler_name: {exc}") from None
    up_w, up_h, w, h = target_size(p)
    if max(up_w, up_h) > MAX_SIDE or min(w, h) < 64:
        what = "hr_scale" if not (p.hr_resize_x or p.hr_resize_y) else "hr_resize_x/hr_resize_y"
        raise ValueError(f"{what}: the hires size {up_w}x{up_h} must be between 64 and {MAX_SIDE} pixels a side")


def init_job(p) -> None:
    """Hires prompts per image and the infotext keys (A1111's)."""
    if not p.enable_hr:
        return
    if p.denoising_strength is None:
        p.denoising_strength = DEFAULT_DENOISING
    count = len(p.all_prompts)
    p.all_hr_prompts = [p.hr_prompt or prompt for prompt in p.all_prompts][:count]
    p.all_hr_negative_prompts = [p.hr_negative_prompt or negative for negative in p.all_negative_prompts][:count]
    params = p.extra_generation_params
    if p.hr_resize_x or p.hr_resize_y:
        params["Hires resize"] = f"{p.hr_resize_x}x{p.hr_resize_y}"
    else:
        params["Hires upscale"] = p.hr_scale
    params["Hires steps"] = p.hr_second_pass_steps or None
    params["Hires upscaler"] = upscaler_name(p)
    if p.hr_sampler_name and p.hr_sampler_name != SAME_SAMPLER:
        params["Hires sampler"] = p.hr_sampler_name
    if p.hr_prompt and p.hr_prompt != p.prompt:
        params["Hires prompt"] = p.hr_prompt
    if p.hr_negative_prompt and p.hr_negative_prompt != p.negative_prompt:
        params["Hires negative prompt"] = p.hr_negative_prompt


def upscale_latents(p, model, latents: torch.Tensor) -> torch.Tensor:
    """First-pass latents -> latents at the hires size (cropped to the final size)."""
    import torch

    from modules import img2img, previews
    factor = img2img.latent_factor(model)
    up_w, up_h, w, h = target_size(p)
    name = upscaler_name(p)
    if name in LATENT_UPSCALE_MODES:
        mode, antialias = LATENT_UPSCALE_MODES[name]
        upscaled = torch.nn.functional.interpolate(latents.float(), size=(up_h // factor, up_w // factor), mode=mode,
                                                   antialias=antialias)
    else:
        images = previews.tensor_to_images(previews.decode_latents(model, latents))
        images = [upscalers.upscale_to(image, name, (up_w, up_h)) for image in images]
        upscaled = img2img.encode_images(model, images)
    top, left = (up_h - h) // 2 // factor, (up_w - w) // 2 // factor
    return upscaled[:, :, top:top + h // factor, left:left + w // factor]


def second_pass(p, model, latents, job, state, seeds, subseeds, first: int) -> torch.Tensor:
    """Upscale one batch's latents and run the img2img pass over them; returns the final latents."""
    from modules import img2img, rng, sampling, unet_compile
    from modules.processing import _preview_callback, _step_noise_generators, sampling_scheduler_config

    init = upscale_latents(p, model, latents).to(model.device)
    batch = init.shape[0]
    noise = rng.batch_noise(tuple(init.shape[1:]), seeds, subseeds, p.subseed_strength).to(model.device)
    steps = p.hr_second_pass_steps or p.steps
    sampler_name = p.hr_sampler_name if p.hr_sampler_name and p.hr_sampler_name != SAME_SAMPLER else p.sampler_name
    scheduler = samplers.create_scheduler(sampler_name, p.scheduler, sampling_scheduler_config(model), steps,
                                          seeds=seeds)
    strength = float(p.denoising_strength)
    timesteps, run = img2img.strength_timesteps(scheduler, steps, strength, True, model.device)
    if run == 0:
        return init
    if strength >= 1.0:
        start = noise * scheduler.init_noise_sigma
    else:
        start = scheduler.add_noise(init, noise, timesteps[:1].repeat(batch))
    window = slice(first, first + batch)
    conditioning = job.batch(p.all_hr_prompts[window], p.all_hr_negative_prompts[window])
    request = sampling.SamplingRequest(
        noise=noise, cond=None, uncond=None, cfg_scale=float(p.cfg_scale), cond_at=conditioning, steps=p.steps,
        generators=_step_noise_generators(seeds, tuple(init.shape[1:])),
        eta=p.eta, init_latents=start, timesteps=timesteps,
    )
    img2img.add_inpainting_model_conditioning(p, model, request)
    state.sampling_step, state.sampling_steps = 0, run
    return sampling.sample(unet_compile.for_model(model), scheduler, request, model.device, model.dtype,
                           on_step=_preview_callback(model, state, run, first))
