"""A1111 sampler names and schedule types -> configured diffusers schedulers.

The whole mapping is data: SAMPLERS says which diffusers class (and which
constructor options) reproduces each A1111 sampler, SCHEDULES says which
config overrides give each schedule type. No sampler math lives here.

Which schedule types a sampler accepts is read from the diffusers class's
constructor (a class without `use_karras_sigmas` cannot do Karras), so the
table cannot drift from what diffusers actually supports.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field



@dataclass(frozen=True)
class ScheduleInfo:
    label: str                 # "Karras" (what the page and infotext show)
    id: str                    # "karras" (what API clients send)
    overrides: dict = field(default_factory=dict, compare=False)  # scheduler config changes; None = sampler default
    aliases: tuple = ()

    @property
    def name(self):            # A1111's /sdapi/v1/schedulers calls the id "name"
        return self.id


@dataclass(frozen=True)
class SamplerInfo:
    name: str                  # "DPM++ 2M"
    scheduler_class: str       # diffusers class name
    options: dict = field(default_factory=dict, compare=False)  # constructor options on top of the model config
    aliases: tuple = ()        # A1111 ids, e.g. "k_dpmpp_2m", "sample_dpmpp_2m"
    default_schedule: str | None = None   # schedule id used for "Automatic"; None = the model's own config
    stochastic: bool = False   # step() draws noise: pass per-image generators (rng.generators)
    note: str = ""

    @property
    def cls(self):
        from modules import ml_imports

        ml_imports.ensure()
        import diffusers  # imported on first use: the page lists samplers without loading diffusers

        return getattr(diffusers, self.scheduler_class)

    def supported_schedules(self) -> list[ScheduleInfo]:
        params = _init_params(self.cls)
        return [s for s in SCHEDULES if set(s.overrides or {}) <= params]


# The sigma-spacing flags are mutually exclusive in diffusers: an explicit
# schedule type first switches them all off (where the class has them), so a
# model config that happens to carry use_karras_sigmas=True cannot leak into
# "Exponential".
_NO_SIGMA_FLAGS = {"use_karras_sigmas": False, "use_exponential_sigmas": False, "use_beta_sigmas": False}

SCHEDULES: list[ScheduleInfo] = [
    ScheduleInfo("Automatic", "automatic", None),
    # k-diffusion's "uniform" (and ComfyUI's "normal") space the timesteps
    # linearly from the first to the last training step: diffusers' linspace.
    ScheduleInfo("Uniform", "uniform", {"timestep_spacing": "linspace"}),
    ScheduleInfo("Karras", "karras", {"use_karras_sigmas": True}),
    ScheduleInfo("Exponential", "exponential", {"use_exponential_sigmas": True}),
    # SGM uniform and "simple" take evenly strided steps counted back from the
    # last training step: diffusers' "trailing" spacing.
    ScheduleInfo("SGM Uniform", "sgm_uniform", {"timestep_spacing": "trailing"}),
    ScheduleInfo("Simple", "simple", {"timestep_spacing": "trailing"}),
    ScheduleInfo("Normal", "normal", {"timestep_spacing": "linspace"}),
    # The original DDIM discretisation: every (1000 // steps)-th step, offset by one.
    ScheduleInfo("DDIM", "ddim", {"timestep_spacing": "leading", "steps_offset": 1}),
    ScheduleInfo("Beta", "beta", {"use_beta_sigmas": True}),
]

# A1111 schedule types with no diffusers equivalent; named so the error says
# "not available in Easel" instead of "unknown".
UNSUPPORTED_SCHEDULES = {
    "polyexponential": "Polyexponential",
    "kl_optimal": "KL Optimal",
    "align_your_steps": "Align Your Steps",
}

def _init_params(cls) -> set[str]:
    return set(inspect.signature(cls.__init__).parameters)


_DPMPP = "DPMSolverMultistepScheduler"

SAMPLERS: list[SamplerInfo] = [
    SamplerInfo("DPM++ 2M", _DPMPP, {"algorithm_type": "dpmsolver++", "solver_order": 2},
                ("k_dpmpp_2m", "sample_dpmpp_2m"), "karras"),
    SamplerInfo("DPM++ SDE", "DPMSolverSDEScheduler", {},
                ("k_dpmpp_sde", "sample_dpmpp_sde"), "karras", stochastic=True,
                note="noise from a Brownian tree seeded by the image seed (needs torchsde)"),
    SamplerInfo("DPM++ 2M SDE", _DPMPP, {"algorithm_type": "sde-dpmsolver++", "solver_order": 2, "solver_type": "midpoint"},
                ("k_dpmpp_2m_sde", "sample_dpmpp_2m_sde"), "exponential", stochastic=True),
    SamplerInfo("DPM++ 2M SDE Heun", _DPMPP, {"algorithm_type": "sde-dpmsolver++", "solver_order": 2, "solver_type": "heun"},
                ("k_dpmpp_2m_sde_heun", "sample_dpmpp_2m_sde_heun"), "exponential", stochastic=True),
    SamplerInfo("DPM++ 2S a", "DPMSolverSinglestepScheduler", {"algorithm_type": "sde-dpmsolver++", "solver_order": 2},
                ("k_dpmpp_2s_a", "sample_dpmpp_2s_ancestral"), "karras", stochastic=True,
                note="diffusers' stochastic single-step DPM-Solver++(2S); close to, not identical with, k-diffusion's"),
    SamplerInfo("DPM++ 3M SDE", _DPMPP, {"algorithm_type": "sde-dpmsolver++", "solver_order": 3},
                ("k_dpmpp_3m_sde", "sample_dpmpp_3m_sde"), "exponential", stochastic=True),
    SamplerInfo("Euler a", "EulerAncestralDiscreteScheduler", {},
                ("k_euler_a", "k_euler_ancestral", "sample_euler_ancestral"), stochastic=True),
    SamplerInfo("Euler", "EulerDiscreteScheduler", {}, ("k_euler", "sample_euler")),
    SamplerInfo("LMS", "LMSDiscreteScheduler", {}, ("k_lms", "sample_lms")),
    SamplerInfo("Heun", "HeunDiscreteScheduler", {}, ("k_heun", "sample_heun")),
    SamplerInfo("DPM2", "KDPM2DiscreteScheduler", {}, ("k_dpm_2", "sample_dpm_2"), "karras"),
    SamplerInfo("DPM2 a", "KDPM2AncestralDiscreteScheduler", {},
                ("k_dpm_2_a", "sample_dpm_2_ancestral"), "karras", stochastic=True),
    SamplerInfo("DDIM", "DDIMScheduler", {}, ("ddim",)),
    SamplerInfo("PLMS", "PNDMScheduler", {"skip_prk_steps": True}, ("plms",)),
    # A1111's UniPC defaults: variant bh1, order 3, ending at the smallest
    # training sigma rather than zero (diffusers' bh1 update divides by an
    # infinite log-SNR step when asked to land exactly on sigma 0 and gives NaN).
    SamplerInfo("UniPC", "UniPCMultistepScheduler",
                {"solver_type": "bh1", "solver_order": 3, "final_sigmas_type": "sigma_min"}, ("unipc",)),
    SamplerInfo("LCM", "LCMScheduler", {}, ("k_lcm", "sample_lcm"), stochastic=True),
]

# A1111 samplers that diffusers has no faithful equivalent for.
UNSUPPORTED_SAMPLERS = {
    "dpm fast": "DPM fast", "k_dpm_fast": "DPM fast",
    "dpm adaptive": "DPM adaptive", "k_dpm_ad": "DPM adaptive",
    "restart": "Restart",
    "ddim cfg++": "DDIM CFG++",
}


def _key(text) -> str:
    return " ".join(str(text).split()).lower()


def _sampler_lookup() -> dict[str, SamplerInfo]:
    table = {}
    for s in SAMPLERS:
        for name in (s.name, *s.aliases):
            table[_key(name)] = s
    return table


def _schedule_lookup() -> dict[str, ScheduleInfo]:
    table = {}
    for s in SCHEDULES:
        for name in (s.label, s.id, *s.aliases):
            table[_key(name)] = s
    return table


_SAMPLER_BY_KEY = _sampler_lookup()
_SCHEDULE_BY_KEY = _schedule_lookup()


def _allowed_samplers() -> str:
    return ", ".join(s.name for s in SAMPLERS)


def _allowed_schedules() -> str:
    return ", ".join(f"{s.label} ({s.id})" for s in SCHEDULES)


def find_schedule(scheduler) -> ScheduleInfo:
    """A schedule type by label or id, case-insensitive; None or "" mean Automatic."""
    if isinstance(scheduler, ScheduleInfo):
        return scheduler
    if scheduler is None or _key(scheduler) == "":
        return SCHEDULES[0]
    found = _SCHEDULE_BY_KEY.get(_key(scheduler))
    if found is not None:
        return found
    if _key(scheduler) in UNSUPPORTED_SCHEDULES or _key(scheduler) in {_key(v) for v in UNSUPPORTED_SCHEDULES.values()}:
        raise ValueError(f"scheduler: schedule type {scheduler!r} is not available in Easel "
                         f"(diffusers has no equivalent); allowed: {_allowed_schedules()}")
    raise ValueError(f"scheduler: unknown schedule type {scheduler!r}; allowed: {_allowed_schedules()}")


def _split_legacy_name(name: str) -> tuple[SamplerInfo, ScheduleInfo | None]:
    """"DPM++ 2M Karras" -> (DPM++ 2M, Karras); a plain name -> (sampler, None)."""
    key = _key(name)
    if key in _SAMPLER_BY_KEY:
        return _SAMPLER_BY_KEY[key], None
    for schedule in SCHEDULES[1:]:
        for suffix in {_key(schedule.label), _key(schedule.id)}:
            if key.endswith(" " + suffix) and key[: -len(suffix) - 1] in _SAMPLER_BY_KEY:
                return _SAMPLER_BY_KEY[key[: -len(suffix) - 1]], schedule
    if key in UNSUPPORTED_SAMPLERS:
        raise ValueError(f"sampler_name: {UNSUPPORTED_SAMPLERS[key]!r} is an A1111 sampler that Easel does not "
                         f"offer (diffusers has no faithful equivalent); allowed: {_allowed_samplers()}")
    raise ValueError(f"sampler_name: unknown sampler {name!r}; allowed: {_allowed_samplers()} "
                     f"(optionally followed by a schedule type, e.g. 'DPM++ 2M Karras')")


def resolve(sampler_name, scheduler=None) -> tuple[SamplerInfo, ScheduleInfo]:
    """Split what a user or client sent into (sampler, schedule type).

    Accepts names, A1111 aliases (the legacy `sampler_index` values such as
    "k_euler_a"), and legacy combined names ("DPM++ 2M Karras"), in any case.
    The schedule stays "Automatic" when nothing chose one, as in A1111's
    infotext; create_scheduler() turns Automatic into the sampler's default.
    Raises ValueError naming the allowed values.
    """
    if isinstance(sampler_name, SamplerInfo):
        sampler, from_name = sampler_name, None
    else:
        if sampler_name is None or _key(sampler_name) == "":
            raise ValueError(f"sampler_name: empty; allowed: {_allowed_samplers()}")
        sampler, from_name = _split_legacy_name(sampler_name)
    schedule = find_schedule(scheduler)
    if from_name is not None:
        if schedule.id != "automatic" and schedule != from_name:
            raise ValueError(f"scheduler: {schedule.label!r} contradicts the schedule type in sampler name "
                             f"{sampler_name!r} ({from_name.label}); send one of them")
        schedule = from_name
    effective = effective_schedule(sampler, schedule)
    if effective is not None and effective not in sampler.supported_schedules():
        allowed = ", ".join(s.label for s in sampler.supported_schedules())
        raise ValueError(f"scheduler: schedule type {schedule.label!r} is not available for sampler "
                         f"{sampler.name!r} (diffusers {sampler.scheduler_class}); allowed: {allowed}")
    return sampler, schedule


def effective_schedule(sampler: SamplerInfo, schedule: ScheduleInfo) -> ScheduleInfo | None:
    """The schedule actually applied: Automatic means the sampler's default, or None (the model's own config)."""
    if schedule.id != "automatic":
        return schedule
    if sampler.default_schedule is None:
        return None
    return find_schedule(sampler.default_schedule)


def create_scheduler(sampler_name, schedule, scheduler_config: dict, steps: int, seeds=None):
    """A diffusers scheduler for this sampler + schedule, built from the model's scheduler config.

    The model's beta schedule, prediction type and training timesteps come
    from `scheduler_config`; only the sampler's own options and the schedule's
    overrides are changed, so "Euler" is exactly
    EulerDiscreteScheduler.from_config(scheduler_config).

    `seeds` (the batch's image seeds, or one seed) seed the Brownian-tree
    noise of DPM++ SDE, one tree per image, so a batch image equals the same
    seed alone; that sampler refuses to run without them. Other samplers
    ignore it (they take per-image generators in step(), see rng.generators).
    set_timesteps() is left to the caller.
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps: must be a whole number >= 1, got {steps!r}")
    sampler, schedule = resolve(sampler_name, schedule)
    options = dict(sampler.options)
    applied = effective_schedule(sampler, schedule)
    if applied is not None:
        accepted = _init_params(sampler.cls)
        options.update({k: v for k, v in _NO_SIGMA_FLAGS.items() if k in accepted})
        options.update(applied.overrides)
    if "noise_sampler_seed" in _init_params(sampler.cls):
        if seeds is None:
            raise ValueError(f"seeds: sampler {sampler.name!r} draws its noise from seeded Brownian trees; "
                             f"pass the image seeds to create_scheduler(..., seeds=[...])")
        options["noise_sampler_seed"] = [int(s) for s in seeds] if isinstance(seeds, (list, tuple)) else int(seeds)
    return sampler.cls.from_config(dict(scheduler_config), **options)


def set_full_schedule(scheduler, steps: int, device=None):
    """set_timesteps() for sampling from pure noise, starting at the first timestep.

    Without a begin index, diffusers finds the starting step by looking up the
    first timestep, and takes its second occurrence when it repeats (meant for
    img2img). DPM2 on a zero-terminal-SNR schedule repeats t=999, so it would
    skip two steps and run past its end into NaN."""
    scheduler.set_timesteps(steps, device=device)
    if hasattr(scheduler, "set_begin_index"):
        scheduler.set_begin_index(0)


def step_accepts_generator(scheduler) -> bool:
    """Whether scheduler.step() takes a `generator` (stochastic samplers draw their noise from it)."""
    return "generator" in inspect.signature(scheduler.step).parameters
