"""A1111 infotext: the generation parameters text stored in every image.

Layout (REFERENCE section 1): the prompt (any number of lines), an optional
"Negative prompt: ..." part, then one line of `key: value` pairs joined by
", ". Values containing "," ":" or a newline are JSON-quoted.
"""

from __future__ import annotations

import json
import re

# Keys in the order A1111 writes them; anything else follows in the caller's
# order, and "Version" always comes last.
KEY_ORDER = [
    "Steps", "Sampler", "Schedule type", "CFG scale", "Image CFG scale", "Seed", "Face restoration", "Size",
    "Model hash", "Model", "VAE hash", "VAE", "Variation seed", "Variation seed strength", "Seed resize from",
    "Denoising strength", "Clip skip", "ENSD", "RNG", "Tiling",
]
LAST_KEYS = ["Version"]

# What a missing key means when reading an infotext back (A1111's defaults for
# images written before the key existed, or by settings that omit it).
PARSE_DEFAULTS = {
    "Clip skip": "1",
    "Schedule type": "Automatic",
    "RNG": "GPU",
    "Hires resize-1": 0,
    "Hires resize-2": 0,
    "Hires sampler": "Use same sampler",
    "Hires checkpoint": "Use same checkpoint",
    "Hires prompt": "",
    "Hires negative prompt": "",
    "Emphasis": "Original",
}

NEGATIVE_PREFIX = "Negative prompt:"

# key: a word character then words, spaces, '-' or '/'; value: a JSON string or anything up to the next comma.
_PARAM = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')
_SIZE = re.compile(r"^(\d+)x(\d+)$")


def quote(value) -> str:
    """A value as it appears on the parameters line: JSON-quoted when it would break the line's syntax.

    Besides A1111's rule (",", ":" or newline) a value that itself starts
    with a double quote is quoted too, otherwise reading it back would
    strip its quotes.
    """
    text = str(value)
    if any(c in text for c in ",:\n") or text.startswith('"'):
        return json.dumps(text, ensure_ascii=False)
    return text


def unquote(text: str) -> str:
    if len(text) >= 2 and text[0] == '"' and text[-1] == '"':
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            return text
    return text


def _ordered(params: dict) -> list[tuple[str, object]]:
    first = [(k, params[k]) for k in KEY_ORDER if k in params]
    last = [(k, params[k]) for k in LAST_KEYS if k in params]
    middle = [(k, v) for k, v in params.items() if k not in KEY_ORDER and k not in LAST_KEYS]
    return first + middle + last


def _omitted(key: str, value) -> bool:
    if value is None:
        return True
    if key == "Clip skip":  # A1111 writes it only when it changes something
        try:
            return int(value) <= 1
        except (TypeError, ValueError):
            return False
    if key == "RNG":  # likewise, only when not the default source
        return str(value) == "GPU"
    return False


def create_infotext(prompt, negative_prompt, params: dict) -> str:
    """The infotext for one image. `params` maps infotext keys to values; None values are left out."""
    for key in params:
        if not isinstance(key, str) or not key or any(c in key for c in ",:\n"):
            raise ValueError(f"params: infotext key {key!r} must be a non-empty string without ',', ':' or newlines")
    line = ", ".join(f"{k}: {quote(v)}" for k, v in _ordered(params) if not _omitted(k, v))
    text = str(prompt or "")
    if negative_prompt:
        text += f"\n{NEGATIVE_PREFIX} {negative_prompt}"
    return f"{text}\n{line}".strip()


def parse_infotext(text: str) -> dict:
    """Read an infotext back into {"Prompt", "Negative prompt", key: value (str), ...}.

    A1111's rules: the last line is the parameters line only if it holds at
    least 3 `key: value` pairs (otherwise it belongs to the prompt); prompt
    and negative prompt may span lines (each line is stripped); "WxH" values
    become "Key-1"/"Key-2"; quoted values are unquoted; missing keys get
    PARSE_DEFAULTS; a legacy sampler name such as "DPM++ 2M Karras" without a
    "Schedule type" is split into the two.
    """
    result: dict = {}
    prompt, negative = "", ""
    done_with_prompt = False
    *lines, last = (text or "").strip().split("\n")
    if len(_PARAM.findall(last)) < 3:
        lines.append(last)
        last = ""

    for line in lines:
        line = line.strip()
        if line.startswith(NEGATIVE_PREFIX):
            done_with_prompt = True
            line = line[len(NEGATIVE_PREFIX):].strip()
        if done_with_prompt:
            negative += ("" if negative == "" else "\n") + line
        else:
            prompt += ("" if prompt == "" else "\n") + line
    result["Prompt"] = prompt
    result["Negative prompt"] = negative

    for key, value in _PARAM.findall(last):
        key = key.strip()
        value = unquote(value.strip())
        size = _SIZE.match(value)
        if size:
            result[f"{key}-1"] = size.group(1)
            result[f"{key}-2"] = size.group(2)
        else:
            result[key] = value

    if "Schedule type" not in result and "Sampler" in result:
        _split_legacy_sampler(result)
    for key, value in PARSE_DEFAULTS.items():
        result.setdefault(key, value)
    return result


def _split_legacy_sampler(result: dict) -> None:
    """Infotexts from before A1111 1.9 carry the schedule in the sampler name."""
    from modules import samplers  # imported here: infotext parsing must not need diffusers otherwise

    try:
        sampler, schedule = samplers.resolve(result["Sampler"])
    except ValueError:
        return  # a sampler Easel does not know: keep the text as written
    result["Sampler"] = sampler.name
    result["Schedule type"] = schedule.label
