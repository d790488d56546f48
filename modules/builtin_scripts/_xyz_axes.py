"""The axis types of the X/Y/Z plot: how values are read, checked, applied to a cell and labelled.

Names and meanings are A1111's ("Seed", "CFG Scale", "Prompt S/R", ...). The
API's x_type/y_type/z_type may be the axis name (any case) or its index in
`axis_options(is_img2img)` (Easel's list: the axes below that exist on the tab).
"""
from __future__ import annotations

import os
import random
import re
from dataclasses import dataclass
from typing import Any, Callable

from modules.builtin_scripts._axis_values import parse_numbers, split_items


@dataclass
class AxisOption:
    label: str
    type: Any                                  # int, float or str
    apply: Callable                            # apply(p, value, all_values)
    format_value: Callable | None = None       # label of one value on the grid; default "Label: value"
    confirm: Callable | None = None            # confirm(values) -> values (ValueError naming the bad one)
    choices: Callable | None = None            # () -> list of allowed strings (the page's dropdown)
    cost: float = 0.0                          # expensive axes (checkpoints) are looped outermost
    tab: str | None = None                     # "txt2img" / "img2img" / None (both)

    def label_of(self, value) -> str:
        if self.format_value is not None:
            return self.format_value(self, value)
        if isinstance(value, float):
            value = round(value, 8)
        return f"{self.label}: {value}"


def _field(name: str):
    def apply(p, value, values):
        setattr(p, name, value)
    return apply


def _override(key: str):
    def apply(p, value, values):
        p.override_settings[key] = value
    return apply


def _plain(opt, value) -> str:
    return str(value)


def _nothing(opt, value) -> str:
    return ""


def _apply_nothing(p, value, values) -> None:
    pass


# -- Prompt S/R: the first value is searched for, every value replaces it --------------------------------

def _apply_prompt(p, value, values) -> None:
    search = values[0]
    p.prompt = _replace(p.prompt, search, value)
    p.negative_prompt = _replace(p.negative_prompt, search, value)
    if getattr(p, "hr_prompt", ""):
        p.hr_prompt = _replace(p.hr_prompt, search, value)
    if getattr(p, "hr_negative_prompt", ""):
        p.hr_negative_prompt = _replace(p.hr_negative_prompt, search, value)


def _replace(prompt, search: str, value: str):
    if isinstance(prompt, (list, tuple)):
        return [str(x).replace(search, value) for x in prompt]
    return str(prompt or "").replace(search, value)


def confirm_prompt_sr(p, values) -> list:
    if not values:
        return values
    texts = [p.prompt, p.negative_prompt]
    flat = " ".join(" ".join(t) if isinstance(t, (list, tuple)) else str(t or "") for t in texts)
    if values[0] not in flat:
        raise ValueError(f"Prompt S/R did not find {values[0]!r} in the prompt or negative prompt; the first value "
                         f"is the text to search for")
    return values


# -- choices ----------------------------------------------------------------------------------------

def _sampler_names() -> list[str]:
    from modules.samplers import SAMPLERS

    return [s.name for s in SAMPLERS]


def _schedule_labels() -> list[str]:
    from modules.samplers import SCHEDULES

    return [s.label for s in SCHEDULES]


def _upscalers() -> list[str]:
    from modules.hires import UPSCALERS

    return list(UPSCALERS)


def _checkpoint_titles() -> list[str]:
    from modules import shared

    return sorted(shared.models.checkpoint_titles(), key=str.lower) if shared.models is not None else []


def _confirm_known(what: str, lookup_name: str, names: Callable):
    """Values that samplers.<lookup_name> resolves (case rules and aliases included); else an error listing `names`."""
    def confirm(p, values) -> list:
        from modules import samplers

        for value in values:
            try:
                getattr(samplers, lookup_name)(value)
            except ValueError:
                raise ValueError(f"unknown {what} {value!r}; choices: {', '.join(names())}") from None
        return values
    return confirm


_confirm_samplers = _confirm_known("sampler", "resolve", _sampler_names)
_confirm_schedules = _confirm_known("schedule type", "find_schedule", _schedule_labels)


def _confirm_choice(what: str, choices: Callable):
    def confirm(p, values) -> list:
        allowed = choices()
        lower = {c.lower(): c for c in allowed}
        out = []
        for value in values:
            if str(value).lower() not in lower:
                raise ValueError(f"unknown {what} {value!r}; choices: {', '.join(allowed)}")
            out.append(lower[str(value).lower()])
        return out
    return confirm


def _confirm_checkpoints(p, values) -> list:
    from modules.builtin_scripts._common import CheckpointSwitcher

    switcher = CheckpointSwitcher()
    return [switcher.find(value) for value in values]       # CheckpointInfo per value (ValueError names the bad one)


def _apply_checkpoint(p, value, values) -> None:
    p.xyz_checkpoint = value                                 # loaded by the plot right before the cell runs


def _format_checkpoint(opt, value) -> str:
    name = getattr(value, "name", str(value))
    return os.path.splitext(os.path.basename(name))[0]


_SIZE = re.compile(r"^\s*(\d+)\s*[xX×]\s*(\d+)\s*$")


def _confirm_sizes(p, values) -> list:
    sizes = []
    for value in values:
        match = _SIZE.match(str(value))
        if not match:
            raise ValueError(f"size {value!r} is not WIDTHxHEIGHT, e.g. 512x512")
        sizes.append(f"{int(match.group(1))}x{int(match.group(2))}")
    return sizes


def _apply_size(p, value, values) -> None:
    width, height = value.split("x")
    p.width, p.height = int(width), int(height)


def _needs_settings(confirm):
    """Axes that change a setting for the cell (override_settings) need the app's settings to be loaded."""
    def wrapped(p, values) -> list:
        from modules import shared

        if shared.opts is None:
            raise ValueError("this axis changes a setting per cell and needs Easel's settings (start the app)")
        return confirm(p, values)
    return wrapped


def _range_check(what: str, low, high):
    def confirm(p, values) -> list:
        for value in values:
            if not low <= value <= high:
                raise ValueError(f"{what} {value!r} is outside {low}..{high}")
        return values
    return confirm


AXIS_OPTIONS = [
    AxisOption("Nothing", str, _apply_nothing, format_value=_nothing),
    AxisOption("Seed", int, _field("seed")),
    AxisOption("Var. seed", int, _field("subseed")),
    AxisOption("Var. strength", float, _field("subseed_strength"), confirm=_range_check("Var. strength", 0.0, 1.0)),
    AxisOption("Steps", int, _field("steps"), confirm=_range_check("Steps", 1, 150)),
    AxisOption("Hires steps", int, _field("hr_second_pass_steps"),
               confirm=_range_check("Hires steps", 0, 150), tab="txt2img"),
    AxisOption("CFG Scale", float, _field("cfg_scale"), confirm=_range_check("CFG Scale", 0.0, 100.0)),
    AxisOption("Prompt S/R", str, _apply_prompt, format_value=_plain, confirm=confirm_prompt_sr),
    AxisOption("Sampler", str, _field("sampler_name"), format_value=_plain, confirm=_confirm_samplers,
               choices=_sampler_names),
    AxisOption("Hires sampler", str, _field("hr_sampler_name"), format_value=_plain,
               confirm=_confirm_samplers, choices=_sampler_names, tab="txt2img"),
    AxisOption("Checkpoint name", str, _apply_checkpoint, format_value=_format_checkpoint,
               confirm=_confirm_checkpoints, choices=_checkpoint_titles, cost=1.0),
    AxisOption("Schedule type", str, _field("scheduler"), format_value=_plain, confirm=_confirm_schedules,
               choices=_schedule_labels),
    AxisOption("Eta", float, _field("eta")),
    AxisOption("Clip skip", int, _override("CLIP_stop_at_last_layers"), confirm=_needs_settings(_range_check("Clip skip", 1, 12))),
    AxisOption("Denoising", float, _field("denoising_strength"), confirm=_range_check("Denoising", 0.0, 1.0)),
    AxisOption("Hires upscaler", str, _field("hr_upscaler"), format_value=_plain,
               confirm=_confirm_choice("hires upscaler", _upscalers), choices=_upscalers, tab="txt2img"),
    AxisOption("Size", str, _apply_size, confirm=_confirm_sizes),
]


def axis_options(is_img2img: bool) -> list[AxisOption]:
    tab = "img2img" if is_img2img else "txt2img"
    return [o for o in AXIS_OPTIONS if o.tab in (None, tab)]


def find_axis(axis: str, value, is_img2img: bool) -> AxisOption:
    """The axis named or indexed by `value`; ValueError naming the choices."""
    options = axis_options(is_img2img)
    if value is None or value == "":
        return options[0]
    if isinstance(value, bool):
        value = int(value)
    if isinstance(value, (int, float)) and float(value).is_integer() and 0 <= int(value) < len(options):
        return options[int(value)]
    for option in options:
        if str(value).strip().lower() == option.label.lower():
            return option
    names = ", ".join(f"{i}: {o.label}" for i, o in enumerate(options))
    raise ValueError(f"{axis} type: unknown axis {value!r}; choices: {names}")


def parse_values(axis: str, option: AxisOption, text, dropdown=None, use_dropdown: bool = True) -> list:
    """The values of one axis: typed, ranges expanded (ValueError starts with the axis name)."""
    if option.label == "Nothing":
        return [None]
    try:
        if use_dropdown and option.choices is not None and dropdown:
            items = [str(v) for v in (dropdown if isinstance(dropdown, (list, tuple)) else [dropdown])]
        elif option.type in (int, float):
            items = parse_numbers(text, option.type)
        else:
            items = split_items(text)
    except ValueError as exc:
        raise ValueError(f"{axis} values ({option.label}): {exc}") from None
    if not items:
        raise ValueError(f"{axis} values ({option.label}): no values given")
    return items


def confirm_values(axis: str, option: AxisOption, p, values: list) -> list:
    if option.confirm is None:
        return values
    try:
        return option.confirm(p, values)
    except ValueError as exc:
        raise ValueError(f"{axis} values ({option.label}): {exc}") from None


def fix_seeds(option: AxisOption, values: list) -> list:
    """-1 on a seed axis becomes one random seed, chosen once for the whole plot (A1111)."""
    if option.label not in ("Seed", "Var. seed"):
        return values
    return [random.randrange(4294967294) if v is None or int(v) == -1 else int(v) for v in values]
