"""Infotext -> a tab's fields: the ↙️ paste buttons and PNG Info's "Send to" buttons.

A tab lists its pasteable fields as (attribute, infotext key, converter)
rows. `pasted_params` parses the text as A1111 does and lets extensions'
`infotext_pasted` callbacks edit the dict; `field_values` turns it into
{attribute: value} for the rows the text names. Keys whose absence means
"off" (variation seed strength, hires fix, hires steps) get that off value,
so regenerating from a pasted infotext gives the same image whatever the
boxes held before. Values that fail to convert, or that a dropdown does not
offer, are left out (the box keeps its value).
"""
from __future__ import annotations

import gradio as gr


def _int(value) -> int:
    return int(float(value))


def _hires_enabled(params: dict) -> bool:
    # A1111: hires fix was on if the text names its scale/upscaler/size and a denoising strength
    # ("Hires sampler" and "Hires resize" always have parse defaults, so they say nothing)
    return "Denoising strength" in params and ("Hires upscale" in params or "Hires upscaler" in params)


COMMON_FIELDS = [
    ("prompt", "Prompt", str),
    ("negative_prompt", "Negative prompt", str),
    ("steps", "Steps", _int),
    ("sampler", "Sampler", str),
    ("scheduler", "Schedule type", str),
    ("cfg_scale", "CFG scale", float),
    ("seed", "Seed", _int),
    ("width", "Size-1", _int),
    ("height", "Size-2", _int),
]
VARIATION_FIELDS = [
    ("subseed", "Variation seed", _int),
    ("subseed_strength", "Variation seed strength", float),
    ("seed_resize_from_w", "Seed resize from-1", _int),
    ("seed_resize_from_h", "Seed resize from-2", _int),
]
HIRES_FIELDS = [
    ("enable_hr", "Hires enable", bool),
    ("hr_scale", "Hires upscale", float),
    ("hr_upscaler", "Hires upscaler", str),
    ("hr_second_pass_steps", "Hires steps", _int),
    ("hr_resize_x", "Hires resize-1", _int),
    ("hr_resize_y", "Hires resize-2", _int),
    ("denoising_strength", "Denoising strength", float),
    ("hr_sampler_name", "Hires sampler", str),
    ("hr_prompt", "Hires prompt", str),
    ("hr_negative_prompt", "Hires negative prompt", str),
]
TXT2IMG_FIELDS = COMMON_FIELDS + VARIATION_FIELDS + HIRES_FIELDS
IMG2IMG_FIELDS = COMMON_FIELDS + [
    ("denoising_strength", "Denoising strength", float),
    ("mask_blur", "Mask blur", _int),
]

# Values that an infotext without the key means (the feature was off).
OFF_VALUES = {
    "Variation seed strength": 0.0,
    "Seed resize from-1": 0,
    "Seed resize from-2": 0,
    "Hires steps": 0,
}


def pasted_params(text: str) -> dict:
    """parse_infotext(text) after extensions' infotext_pasted callbacks, plus "Hires enable"."""
    from modules import script_callbacks
    from modules.infotext import parse_infotext

    params = parse_infotext(text)
    script_callbacks.infotext_pasted_callback(text, params)
    params["Hires enable"] = _hires_enabled(params)
    for key, value in OFF_VALUES.items():
        params.setdefault(key, value)
    return params


def field_values(params: dict, fields: list, choices: dict[str, list] | None = None) -> dict:
    """{attribute: value} for the fields `params` names, converted; unknown dropdown values left out."""
    choices = choices or {}
    values = {}
    for attr, key, convert in fields:
        if key not in params or params[key] is None:
            continue
        try:
            value = convert(params[key])
        except (TypeError, ValueError):
            continue
        if attr in choices and value not in choices[attr]:
            continue
        values[attr] = value
    return values


def dropdown_choices(tab, attrs) -> dict[str, list]:
    """The values each dropdown attribute of `tab` offers."""
    return {attr: [choice[1] if isinstance(choice, (tuple, list)) else choice for choice in getattr(tab, attr).choices]
            for attr in attrs if hasattr(tab, attr)}


def paste_targets(tab, fields: list) -> list[str]:
    """The attributes of `fields` that `tab` has a component for, in `fields` order."""
    return [attr for attr, _key, _convert in fields if hasattr(tab, attr)]


def updates_for(text: str | None, tab_attrs: list[str], fields: list, choices: dict) -> list:
    """One gr.update (or gr.skip) per attribute in `tab_attrs`, from the infotext `text`."""
    if not text or not text.strip():
        return [gr.skip() for _ in tab_attrs]
    values = field_values(pasted_params(text), fields, choices)
    return [gr.update(value=values[attr]) if attr in values else gr.skip() for attr in tab_attrs]


def script_fields(runner) -> list[tuple]:
    """Extension scripts' `infotext_fields`: [(component, infotext key or callable(params) -> value, extension)]."""
    pairs = []
    for script in getattr(runner, "scripts", None) or []:
        for pair in getattr(script, "infotext_fields", None) or []:
            if isinstance(pair, (tuple, list)) and len(pair) == 2 and isinstance(pair[0], gr.components.Component):
                pairs.append((pair[0], pair[1], getattr(script, "extension", None) or "scripts"))
    return pairs


def script_field_update(component, key, params: dict, extension: str = "scripts"):
    """A1111's rule: a callable key computes the value, a string names it; None leaves the component alone."""
    from modules import extensions

    try:
        value = key(params) if callable(key) else params.get(key)
        if value is None:
            return gr.skip()
        current = getattr(component, "value", None)
        if isinstance(current, bool) or isinstance(component, gr.Checkbox):
            value = value if isinstance(value, bool) else str(value).lower() == "true"
        elif isinstance(current, int) and not isinstance(value, int):
            value = int(float(value))
        elif isinstance(current, float):
            value = float(value)
        return gr.update(value=value)
    except Exception as exc:  # an extension's field must not break pasting the others
        extensions.report_error(extension, f"infotext field {getattr(key, '__name__', key)!r}", exc)
        return gr.skip()


def bind_paste_button(button: gr.Button, tab, fields: list, source: gr.components.Component, extra_outputs=(),
                      extra=None, runner=None) -> None:
    """Clicking `button` fills `tab`'s fields from the infotext in `source` (the prompt box).

    `extra(values) -> list` gives the updates of `extra_outputs` (the hires
    accordion's open state, for instance) from the pasted {attribute: value}.
    `runner`'s scripts' `infotext_fields` are filled too (A1111 extensions).
    """
    attrs = paste_targets(tab, fields)
    choices = dropdown_choices(tab, ("sampler", "scheduler", "hr_upscaler", "hr_sampler_name"))
    pairs = script_fields(runner)
    outputs = [getattr(tab, attr) for attr in attrs] + list(extra_outputs) + [component for component, _, _ in pairs]

    def paste(text):
        if not text or not text.strip():
            return [gr.skip() for _ in outputs]
        params = pasted_params(text)
        values = field_values(params, fields, choices)
        updates = [gr.update(value=values[attr]) if attr in values else gr.skip() for attr in attrs]
        if extra_outputs:
            updates += list(extra(values))
        return updates + [script_field_update(component, key, params, ext) for component, key, ext in pairs]

    button.click(paste, inputs=[source], outputs=outputs, show_progress="hidden", concurrency_limit=None)
