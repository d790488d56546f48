"""Processing objects (A1111's names and fields) and `process_images`, the one generation path.

The page, the API, scripts and the evaluator all build a
`StableDiffusionProcessingTxt2Img` and call `process_images(p)` on the worker
thread. Steps: validate -> seeds and prompts per image -> per batch: encode,
draw noise, sample, decode -> infotext, save, collect -> `Processed`.
"""
from __future__ import annotations

import json
import os
import logging
from dataclasses import dataclass, field
from typing import Any

import torch

from modules import infotext, job_conditioning, previews, rng, samplers, sampling, script_callbacks, unet_compile

log = logging.getLogger(__name__)

EASEL_VERSION = "easel-0.1"
MAX_STEPS = 150
MAX_SIDE = 4096


@dataclass
class StableDiffusionProcessing:
    prompt: Any = ""
    negative_prompt: Any = ""
    styles: list = field(default_factory=list)
    seed: int = -1
    subseed: int = -1
    subseed_strength: float = 0.0
    seed_resize_from_h: int = -1
    seed_resize_from_w: int = -1
    sampler_name: str = "Euler a"
    scheduler: str | None = None
    batch_size: int = 1
    n_iter: int = 1
    steps: int = 20
    cfg_scale: float = 7.0
    width: int = 512
    height: int = 512
    restore_faces: bool = False
    tiling: bool = False
    do_not_save_samples: bool = False
    do_not_save_grid: bool = False
    eta: float | None = None
    denoising_strength: float | None = None
    s_churn: float = 0.0
    s_tmax: float | None = None
    s_tmin: float = 0.0
    s_noise: float = 1.0
    override_settings: dict = field(default_factory=dict)
    override_settings_restore_afterwards: bool = True
    outpath_samples: str | None = None
    outpath_grids: str | None = None
    extra_generation_params: dict = field(default_factory=dict)
    sd_model: Any = None               # LoadedModel; None = the one loaded in shared.models
    scripts: Any = None
    script_args: Any = ()
    task_id: str | None = None
    # filled in by process_images (A1111 names; extensions read them)
    all_prompts: list = field(default_factory=list)
    all_negative_prompts: list = field(default_factory=list)
    all_seeds: list = field(default_factory=list)
    all_subseeds: list = field(default_factory=list)
    iteration: int = 0

    is_img2img = False
    outdir_kind = "txt2img-images"

    @property
    def sampler_label(self) -> str:
        return samplers.resolve(self.sampler_name, self.scheduler)[0].name

    # Hooks where img2img, inpainting and hires fix (modules/img2img.py, modules/hires.py) change the one loop.
    def check_fields(self, family) -> None:
        """Check the fields a subclass adds (ValueError naming the field)."""

    def init_job(self, model) -> None:
        """Once per job, after seeds and prompts are fixed (img2img prepares its images and mask here)."""

    def before_sampling(self, model, scheduler, request, state, first: int) -> None:
        """Adjust one batch's SamplingRequest (start latents, timesteps, masks) and the steps shown."""
        state.sampling_steps = self.steps
        from modules import img2img

        img2img.add_inpainting_model_conditioning(self, model, request)

    def after_sampling(self, model, latents, job, state, seeds, subseeds, first: int):
        """The batch's final latents (hires fix runs its second pass here)."""
        return latents

    def postprocess_images(self, model, images: list, first: int) -> list:
        """The batch's decoded images (inpainting pastes the unmasked original back)."""
        return images


@dataclass
class StableDiffusionProcessingTxt2Img(StableDiffusionProcessing):
    enable_hr: bool = False
    hr_scale: float = 2.0
    hr_upscaler: str | None = None
    hr_second_pass_steps: int = 0
    hr_resize_x: int = 0
    hr_resize_y: int = 0
    hr_sampler_name: str | None = None
    hr_prompt: str = ""
    hr_negative_prompt: str = ""
    firstphase_width: int = 0
    firstphase_height: int = 0
    all_hr_prompts: list = field(default_factory=list)
    all_hr_negative_prompts: list = field(default_factory=list)

    def check_fields(self, family) -> None:
        from modules import hires

        hires.validate(self)

    def init_job(self, model) -> None:
        from modules import hires

        hires.init_job(self)

    def after_sampling(self, model, latents, job, state, seeds, subseeds, first: int):
        from modules import hires

        if not self.enable_hr or state.interrupted or state.skipped:
            return latents
        return hires.second_pass(self, model, latents, job, state, seeds, subseeds, first)


@dataclass
class Processed:
    images: list
    infotexts: list
    seed: int
    all_seeds: list
    subseed: int
    all_subseeds: list
    prompt: str
    all_prompts: list
    negative_prompt: str
    all_negative_prompts: list
    width: int
    height: int
    sampler_name: str
    cfg_scale: float
    steps: int
    batch_size: int
    sd_model_name: str
    sd_model_hash: str
    clip_skip: int
    job_timestamp: str
    subseed_strength: float = 0.0
    seed_resize_from_w: int = -1
    seed_resize_from_h: int = -1
    styles: list = field(default_factory=list)
    extra_generation_params: dict = field(default_factory=dict)
    index_of_first_image: int = 0
    interrupted: bool = False
    saved_paths: list = field(default_factory=list)
    latents: list = field(default_factory=list)      # final latents per image (CPU), for later passes and tests
    warnings: list = field(default_factory=list)     # prompt problems that did not stop the job (unknown LoRA, ...)

    @property
    def comments(self) -> str:
        """A1111's `comments`: the warnings, one per line."""
        return "\n".join(self.warnings)

    @property
    def info(self) -> str:
        return self.infotexts[0] if self.infotexts else ""

    def js(self) -> str:
        """A1111's JSON `info` string (the API returns it as `info`)."""
        return json.dumps({
            "prompt": self.prompt, "all_prompts": self.all_prompts, "negative_prompt": self.negative_prompt,
            "all_negative_prompts": self.all_negative_prompts, "seed": self.seed, "all_seeds": self.all_seeds,
            "subseed": self.subseed, "all_subseeds": self.all_subseeds, "subseed_strength": self.subseed_strength,
            "width": self.width, "height": self.height, "sampler_name": self.sampler_name, "cfg_scale": self.cfg_scale,
            "steps": self.steps, "batch_size": self.batch_size, "restore_faces": False, "face_restoration_model": None,
            "sd_model_name": self.sd_model_name, "sd_model_hash": self.sd_model_hash, "seed_resize_from_w": self.seed_resize_from_w,
            "seed_resize_from_h": self.seed_resize_from_h, "denoising_strength": None,
            "extra_generation_params": self.extra_generation_params, "index_of_first_image": self.index_of_first_image,
            "infotexts": self.infotexts, "styles": self.styles, "job_timestamp": self.job_timestamp,
            "clip_skip": self.clip_skip, "is_using_inpainting_conditioning": False,
        })


def fix_seed(p: StableDiffusionProcessing) -> None:
    """Replace -1 seeds with concrete random ones (A1111 `fix_seed`); a list (one seed per image) is kept."""
    p.seed = [rng.fix_seed(s) for s in p.seed] if isinstance(p.seed, (list, tuple)) else rng.fix_seed(p.seed)
    p.subseed = rng.fix_seed(p.subseed)


def validate(p: StableDiffusionProcessing, family) -> None:
    """Reject bad parameters with a message naming the field and the allowed range."""
    multiple = 8
    for name in ("width", "height"):
        value = getattr(p, name)
        if not isinstance(value, int) or value < 64 or value > MAX_SIDE or value % multiple:
            raise ValueError(f"{name} must be a multiple of {multiple} between 64 and {MAX_SIDE}, got {value!r}")
    if not isinstance(p.steps, int) or not 1 <= p.steps <= MAX_STEPS:
        raise ValueError(f"steps must be between 1 and {MAX_STEPS}, got {p.steps!r}")
    if not 1 <= p.batch_size <= 64:
        raise ValueError(f"batch_size must be between 1 and 64, got {p.batch_size!r}")
    if not 1 <= p.n_iter <= 1000:
        raise ValueError(f"n_iter must be between 1 and 1000, got {p.n_iter!r}")
    if not 0.0 <= float(p.cfg_scale) <= 100.0:
        raise ValueError(f"cfg_scale must be between 0 and 100, got {p.cfg_scale!r}")
    if not 0.0 <= float(p.subseed_strength) <= 1.0:
        raise ValueError(f"subseed_strength must be between 0 and 1, got {p.subseed_strength!r}")
    samplers.resolve(p.sampler_name, p.scheduler)  # raises ValueError naming the allowed names
    p.check_fields(family)


def _current_model(p):
    if p.sd_model is not None:
        return p.sd_model
    from modules import shared

    return shared.models.require_model()


def _setting(name: str, default):
    from modules import shared

    try:
        return getattr(shared.opts, name)
    except (AttributeError, KeyError):
        return default


ZERO_TERMINAL_SNR = "Zero Terminal SNR"


def _noise_schedule_label(model) -> str | None:
    """The "Noise Schedule" infotext value: set when sampling uses zero terminal SNR."""
    if model.family.zero_terminal_snr or _setting("sd_noise_schedule", "Default") == ZERO_TERMINAL_SNR:
        return ZERO_TERMINAL_SNR
    return None


def sampling_scheduler_config(model) -> dict:
    """The scheduler config to sample `model` with.

    A checkpoint marked zero-terminal-SNR already carries that schedule; A1111's
    "Noise schedule for sampling" setting applies it to any other model."""
    from modules import noise_schedule

    if not model.family.zero_terminal_snr and _setting("sd_noise_schedule", "Default") == ZERO_TERMINAL_SNR:
        return noise_schedule.with_zero_terminal_snr(model.scheduler_config)
    return model.scheduler_config


def _eta_noise_seed_delta() -> int:
    """A1111's ENSD setting; 0 when it is unset."""
    return int(_setting("eta_noise_seed_delta", 0) or 0)


def _step_noise_generators(seeds, noise_shape) -> list:
    """Per-image generators for the noise stochastic samplers add at each step, ENSD applied."""
    return rng.generators(seeds, noise_shape, _eta_noise_seed_delta())


def _ensd_for_infotext(sampler):
    """ENSD goes into infotext only where it changes the image: a stochastic sampler with a non-zero delta."""
    delta = _eta_noise_seed_delta()
    return delta if delta and sampler.stochastic else None


def _per_image(value, count: int) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value] * count


def _apply_styles(p: StableDiffusionProcessing) -> None:
    """A1111's `p.styles`: the named styles of styles.csv are merged into the prompts once, at the start."""
    if not p.styles or getattr(p, "_styles_applied", False):
        return
    from modules import shared, styles

    db = styles.StyleDatabase(shared.paths.styles_file)
    unknown = [name for name in p.styles if name not in db.styles]
    if unknown:
        raise ValueError(f"styles: no style named {', '.join(map(repr, unknown))}; known: {list(db.styles)}")

    def styled(prompt, negative: bool):
        apply = db.apply_negative_styles_to_prompt if negative else db.apply_styles_to_prompt
        return [apply(x, p.styles) for x in prompt] if isinstance(prompt, (list, tuple)) else apply(prompt or "", p.styles)

    p.prompt, p.negative_prompt = styled(p.prompt, False), styled(p.negative_prompt, True)
    if getattr(p, "hr_prompt", "") or getattr(p, "hr_negative_prompt", ""):
        p.hr_prompt, p.hr_negative_prompt = styled(p.hr_prompt, False), styled(p.hr_negative_prompt, True)
    p._styles_applied = True


def _prepare(p: StableDiffusionProcessing) -> None:
    fix_seed(p)
    _apply_styles(p)
    count = p.batch_size * p.n_iter
    p.all_prompts = _per_image(p.prompt, count)
    p.all_negative_prompts = _per_image(p.negative_prompt or "", count)
    if len(p.all_prompts) != count or len(p.all_negative_prompts) != count:
        raise ValueError(f"prompt lists must have batch_size * n_iter = {count} entries")
    if isinstance(p.seed, (list, tuple)):  # A1111: scripts (prompt matrix) may give every image its seed
        if len(p.seed) != count:
            raise ValueError(f"seed: a list of seeds must have batch_size * n_iter = {count} entries, got {len(p.seed)}")
        p.all_seeds = list(p.seed)
    else:
        p.all_seeds = [p.seed + i for i in range(count)]
    p.all_subseeds = [p.subseed + i for i in range(count)]


def latent_factor(model) -> int:
    """Pixels per latent cell, read from the loaded VAE (tiny test VAEs differ from their family's)."""
    return 2 ** (len(model.vae.config.block_out_channels) - 1)


def _vae_hash(model) -> str | None:
    """Short hash of an external VAE file (none when the checkpoint's own VAE is used)."""
    path = getattr(model, "vae_path", None)
    if not path:
        return None
    from modules import checkpoints

    digest = checkpoints.cached_sha256(path, getattr(model.checkpoint, "cache_path", None))
    return digest[:10] if digest else None


def build_infotext(p, model, index: int, clip_skip: int, scheduler_label: str | None) -> str:
    """A1111 infotext for image `index` of the job (REFERENCE section 1)."""
    sampler, _ = samplers.resolve(p.sampler_name, p.scheduler)
    params = {
        "Steps": p.steps,
        "Sampler": sampler.name,
        "Schedule type": scheduler_label,
        "CFG scale": p.cfg_scale,
        "Seed": p.all_seeds[index],
        "Size": f"{p.width}x{p.height}",
        "Model hash": model.checkpoint.shorthash(),
        "Model": model.checkpoint.model_name,
        "VAE hash": _vae_hash(model),
        "VAE": os.path.basename(model.vae_path) if getattr(model, "vae_path", None) else None,
        "Variation seed": p.all_subseeds[index] if p.subseed_strength > 0 else None,
        "Variation seed strength": p.subseed_strength if p.subseed_strength > 0 else None,
        "Seed resize from": f"{p.seed_resize_from_w}x{p.seed_resize_from_h}" if p.seed_resize_from_w > 0 and p.seed_resize_from_h > 0 else None,
        "Denoising strength": p.denoising_strength,
        "Clip skip": clip_skip if clip_skip > 1 else None,
        "ENSD": _ensd_for_infotext(sampler),
        "Noise Schedule": _noise_schedule_label(model),
        **p.extra_generation_params,
        "Version": EASEL_VERSION,
    }
    return infotext.create_infotext(p.all_prompts[index], p.all_negative_prompts[index], params)


def _conditioning(job, prompts: list[str], negatives: list[str]):
    """Per-step conditioning of one batch (prompt editing, AND, LoRA tags, embeddings; each text encoded once per job)."""
    return job.batch(prompts, negatives)


def _preview_callback(model, state, steps: int, batch_offset: int):
    every = int(_setting("show_progress_every_n_steps", 1))
    method = _setting("show_progress_type", "Approx cheap") if _setting("live_previews_enable", True) else "None"
    pending = None   # a cheap preview still being copied off the GPU (previews.PendingPreview)

    def on_step(index: int, total: int, x0: torch.Tensor) -> None:
        nonlocal pending
        # multi-call samplers (Heun, DPM2) run ~2 scheduler steps per user step
        state.sampling_step = min(steps, round((index + 1) * steps / total))
        if state.interrupted or state.skipped:
            raise sampling.StopSampling
        if method != "None" and every > 0 and (state.sampling_step % every == 0) and state.sampling_step < steps:
            if method == "Approx cheap":
                # one copy in flight at a time: a GPU running behind skips previews rather than queueing them
                if pending is None:
                    pending = previews.PendingPreview(x0[0], model.family.latent_rgb_factors)
            else:
                image = previews.make_preview(model, x0[0], method)
                if image is not None:
                    state.set_preview(image)
        if pending is not None and pending.ready():
            state.set_preview(pending.image())
            pending = None

    return on_step


def process_images(p: StableDiffusionProcessing) -> Processed:
    """Generate all images of `p` (applying `override_settings` for the job)."""
    from modules import jobs

    if p.scripts is not None: p.scripts.before_process(p)  # extension hooks (modules.scripts.ScriptRunner)
    restore = _apply_overrides(p.override_settings)
    try:
        processed = _process(p, jobs.current_state())
        if p.scripts is not None:
            # A1111's batch grid (return_grid / grid_save) belongs to a tab's job: the page and the API run p
            # through their ScriptRunner; bare process_images calls (library code, tests) get only the images.
            from modules import grids

            grids.add_batch_grid(p, processed)
            p.scripts.postprocess(p, processed)
        return processed
    finally:
        if p.override_settings_restore_afterwards:
            restore()


def _apply_overrides(overrides: dict):
    from modules import shared

    if not overrides:
        return lambda: None
    saved = {}
    for key, value in overrides.items():
        if key == "sd_model_checkpoint":
            continue  # switching model is a job of its own (model_manager); handled by the caller
        saved[key] = getattr(shared.opts, key)
        # as A1111: a per-job override runs no onchange callback (a precision override must not queue reloads)
        shared.opts.set(key, value, run_callbacks=False)

    def restore():
        for key, value in saved.items():
            shared.opts.set(key, value, run_callbacks=False)

    return restore


def _process(p: StableDiffusionProcessing, state) -> Processed:
    model = _current_model(p)
    validate(p, model.family)
    _prepare(p)
    if p.scripts is not None: p.scripts.process(p)  # may rewrite p.all_prompts, p.extra_generation_params
    p.init_job(model)
    clip_skip = int(_setting("CLIP_stop_at_last_layers", 1))
    sampler, schedule = samplers.resolve(p.sampler_name, p.scheduler)
    applied = samplers.effective_schedule(sampler, schedule)
    schedule_label = applied.label if applied is not None else None
    factor = latent_factor(model)
    latent_shape = (model.family.latent_channels, p.height // factor, p.width // factor)
    resize_from = (p.seed_resize_from_w // factor, p.seed_resize_from_h // factor) if p.seed_resize_from_w > 0 and p.seed_resize_from_h > 0 else (0, 0)

    state.job_count = p.n_iter
    state.sampling_steps = p.steps
    job = job_conditioning.JobConditioning(model, p.steps, p.width, p.height, clip_skip=clip_skip,
                                           emphasis=str(_setting("emphasis", "Original")))
    try:  # LoRA weights merged for this job are restored in `finally`
        return _process_batches(p, state, model, job, sampler, schedule, schedule_label, latent_shape,
                                resize_from, clip_skip)
    finally:
        job.close()


def _process_batches(p, state, model, job, sampler, schedule, schedule_label, latent_shape, resize_from, clip_skip):
    images, infotexts, saved, final_latents = [], [], [], []
    for n in range(p.n_iter):
        if state.interrupted:
            break
        state.job_no, state.sampling_step, state.skipped = n, 0, False
        p.iteration = n
        first = n * p.batch_size
        window = slice(first, first + p.batch_size)
        seeds, subseeds = p.all_seeds[window], p.all_subseeds[window]
        p.prompts, p.negative_prompts, p.seeds, p.subseeds = p.all_prompts[window], p.all_negative_prompts[window], seeds, subseeds
        if p.scripts is not None: p.scripts.batch_hooks(p, batch_number=n)  # before_process_batch + process_batch
        conditioning = _conditioning(job, p.prompts, p.negative_prompts)
        noise = rng.batch_noise(latent_shape, seeds, subseeds, p.subseed_strength, resize_from)
        scheduler = samplers.create_scheduler(sampler.name, schedule.id, sampling_scheduler_config(model), p.steps,
                                              seeds=seeds)
        samplers.set_full_schedule(scheduler, p.steps, device=model.device)
        request = sampling.SamplingRequest(
            noise=noise, cond=None, uncond=None, cfg_scale=float(p.cfg_scale), cond_at=conditioning, steps=p.steps,
            generators=_step_noise_generators(seeds, latent_shape), eta=p.eta,
        )
        p.before_sampling(model, scheduler, request, state, first)
        latents = sampling.sample(unet_compile.for_model(model), scheduler, request, model.device, model.dtype,
                                  on_step=_preview_callback(model, state, state.sampling_steps, first),
                                  **script_callbacks.denoiser_hooks(len(scheduler.timesteps)))
        latents = p.after_sampling(model, latents, job, state, seeds, subseeds, first)
        if state.interrupted or state.skipped:
            continue  # the unfinished batch is dropped; finished images stay
        state.sampling_step = state.sampling_steps
        p.extra_generation_params.update({k: v for k, v in job.infotext_params().items() if v is not None})
        decoded = previews.decode_latents(model, latents)
        if p.scripts is not None: p.scripts.postprocess_batch(p, decoded, batch_number=n)
        batch_images = previews.tensor_to_images(decoded)
        batch_images = p.postprocess_images(model, batch_images, first)
        if p.scripts is not None: batch_images = p.scripts.postprocess_batch_images(p, batch_images, batch_number=n)
        final_latents.extend(latents.float().cpu())
        for offset, image in enumerate(batch_images):
            index = first + offset
            text = build_infotext(p, model, index, clip_skip, schedule_label)
            images.append(image)
            infotexts.append(text)
            if not p.do_not_save_samples and _setting("samples_save", True):
                saved.append(_save(p, image, index, text))
    return Processed(
        images=images, infotexts=infotexts, seed=p.all_seeds[0], all_seeds=p.all_seeds, subseed=p.all_subseeds[0],
        all_subseeds=p.all_subseeds, prompt=p.all_prompts[0], all_prompts=p.all_prompts,
        negative_prompt=p.all_negative_prompts[0], all_negative_prompts=p.all_negative_prompts,
        width=p.width, height=p.height, sampler_name=sampler.name, cfg_scale=p.cfg_scale, steps=p.steps,
        batch_size=p.batch_size, sd_model_name=model.checkpoint.model_name, sd_model_hash=model.checkpoint.shorthash(),
        clip_skip=clip_skip, job_timestamp=state.job_timestamp, subseed_strength=p.subseed_strength,
        seed_resize_from_w=p.seed_resize_from_w, seed_resize_from_h=p.seed_resize_from_h, styles=list(p.styles),
        extra_generation_params=dict(p.extra_generation_params), interrupted=state.interrupted, saved_paths=saved,
        latents=final_latents, warnings=list(job.warnings),
    )


def _save(p, image, index: int, text: str) -> str:
    from modules import images as image_files, shared

    # save_image adds the [date] sub-folder itself (save_to_dirs / directories_filename_pattern), as in A1111
    outdir = p.outpath_samples or str(shared.paths.outputs_dir / p.outdir_kind)
    path, _ = image_files.save_image(image, outdir, "", seed=p.all_seeds[index], prompt=p.all_prompts[index],
                                     extension=_setting("samples_format", "png"), info=text, p=p)
    return path


def __getattr__(name: str):
    """`StableDiffusionProcessingImg2Img` lives in modules/img2img.py; extensions import it from here (A1111 name)."""
    if name == "StableDiffusionProcessingImg2Img":
        from modules.img2img import StableDiffusionProcessingImg2Img

        return StableDiffusionProcessingImg2Img
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
