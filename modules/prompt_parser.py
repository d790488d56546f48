"""A1111's prompt language (REFERENCE section 3), with A1111's public function names.

- parse_prompt_attention(text): emphasis -> [[text, weight], ...]
- get_learned_conditioning_prompt_schedules(prompts, steps): prompt editing
  `[from:to:when]` and alternation `[a|b]` -> per prompt [[end_step, text], ...]
- get_multicond_prompt_list(prompts): `AND` with `:weight` -> sub-prompts
- get_learned_conditioning / get_multicond_learned_conditioning(model, prompts, steps):
  the same with each text encoded (A1111 named tuples; for extensions)

Extensions import these; their return shapes are A1111's. The sampling loop
uses them through modules/prompt_schedules.py. Nothing here raises on bad
prompt text: what does not parse as syntax is kept as plain text.
"""

from __future__ import annotations

import math
import re
from functools import lru_cache
from typing import NamedTuple

import lark

ROUND_MULTIPLIER = 1.1           # "(x)"
SQUARE_MULTIPLIER = 1 / 1.1      # "[x]"

# One token of the emphasis syntax per match, tried in this order:
# escapes, brackets, an explicit weight closing a round bracket ":1.3)",
# plain text, and a stray colon (kept as text).
_ATTENTION_TOKEN = re.compile(r"""
    \\[()\[\]\\]            # escaped bracket or backslash: literal
  | \\                      # lone backslash: dropped
  | \(  | \[                # openers
  | :\s*(?P<weight>[+-]?[.\d]+)\s*\)   # "(text:1.3)" closer
  | \)  | \]                # closers
  | [^\\()\[\]:]+           # text
  | :                       # a colon that does not start a weight
""", re.VERBOSE)

_BREAK = re.compile(r"\s*\bBREAK\b\s*")
BREAK_MARK = ["BREAK", -1]   # how a BREAK appears in the parsed list (weight -1), as in A1111


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def parse_prompt_attention(text: str) -> list[list]:
    """Split `text` into [[text, weight], ...] with A1111's emphasis rules.

    (x) x1.1, ((x)) x1.21, (x:1.3) x1.3, [x] /1.1, nesting multiplies,
    \\( \\) \\[ \\] are literal, unclosed brackets run to the end of the text,
    neighbouring runs of equal weight merge, BREAK becomes ["BREAK", -1].

    >>> parse_prompt_attention('a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).')
    ... # [['a ', 1.0], ['house', 1.573], [' ', 1.1], ['on', 1.0], [' a ', 1.1],
    ... #  ['hill', 0.55], [', sun, ', 1.1], ['sky', 1.4641], ['.', 1.1]]
    """
    parts: list[list] = []
    open_round: list[int] = []    # index into `parts` where each open bracket started
    open_square: list[int] = []

    def scale_from(start: int, factor: float) -> None:
        for part in parts[start:]:
            if part != BREAK_MARK:  # a BREAK inside brackets stays a BREAK
                part[1] *= factor

    for match in _ATTENTION_TOKEN.finditer(text):
        token, weight = match.group(0), match.group("weight")
        if token.startswith("\\"):
            parts.append([token[1:], 1.0])
        elif token == "(":
            open_round.append(len(parts))
        elif token == "[":
            open_square.append(len(parts))
        elif weight is not None and open_round and _is_number(weight) and math.isfinite(float(weight)):
            scale_from(open_round.pop(), float(weight))
        elif token == ")" and open_round:
            scale_from(open_round.pop(), ROUND_MULTIPLIER)
        elif token == "]" and open_square:
            scale_from(open_square.pop(), SQUARE_MULTIPLIER)
        else:
            # plain text (or a closer with nothing open, kept as text); BREAK splits it
            for i, piece in enumerate(_BREAK.split(token)):
                if i > 0:
                    parts.append(list(BREAK_MARK))
                parts.append([piece, 1.0])

    for start in open_round:
        scale_from(start, ROUND_MULTIPLIER)
    for start in open_square:
        scale_from(start, SQUARE_MULTIPLIER)

    if not parts:
        return [["", 1.0]]
    merged = [parts[0]]
    for part in parts[1:]:
        if part[1] == merged[-1][1]:
            merged[-1][0] += part[0]
        else:
            merged.append(part)
    return merged


# ---------------------------------------------------------------- prompt editing and alternation

# Grammar of the step-dependent syntax: brackets nest, everything else is
# text. Which square brackets are editing `[a:b:when]` / `[b:when]` or
# alternation `[a|b]` is decided on the tree (a `when` must be a number);
# other brackets stay verbatim, so emphasis is parsed later, by
# parse_prompt_attention, on the text chosen for each step. LALR keeps a
# 300-token prompt in the milliseconds (an ambiguous Earley grammar took
# seconds). Unbalanced brackets do not parse: then the prompt is used as is,
# without editing, as in A1111.
_SCHEDULE_GRAMMAR = r"""
start: (_inner | RPAR | RSQB)*
_inner: PLAIN | round | square | COLON | BAR
round: "(" _inner* ")"
square: "[" _inner* "]"
PLAIN: /([^\\\[\]():|]|\\[\s\S]?)+/
COLON: ":"
BAR: "|"
RPAR: ")"
RSQB: "]"
"""
_WHEN = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*")


@lru_cache(maxsize=1)
def _schedule_parser() -> lark.Lark:
    return lark.Lark(_SCHEDULE_GRAMMAR, parser="lalr")


@lru_cache(maxsize=4096)
def _parse_schedule_tree(prompt: str):
    """The syntax tree, or None when the brackets do not balance (then the text is used as is)."""
    try:
        return _schedule_parser().parse(prompt)
    except lark.exceptions.LarkError:
        return None


def _split_at(children: list, token_type: str) -> list[list]:
    parts: list[list] = [[]]
    for child in children:
        if isinstance(child, lark.Token) and child.type == token_type:
            parts.append([])
        else:
            parts[-1].append(child)
    return parts


def _has_token(children: list, token_type: str) -> bool:
    return any(isinstance(c, lark.Token) and c.type == token_type for c in children)


def _square_kind(node):
    """('scheduled', before, after, when_text) | ('alternate', options) | None (a plain `[...]`), cached on the node."""
    kind = getattr(node, "_kind", False)
    if kind is not False:
        return kind
    kind = None
    has_colon, has_bar = _has_token(node.children, "COLON"), _has_token(node.children, "BAR")
    if has_bar and not has_colon:
        kind = ("alternate", _split_at(node.children, "BAR"))
    elif has_colon and not has_bar:
        parts = _split_at(node.children, "COLON")
        last = parts[-1]
        when = _WHEN.fullmatch(str(last[0])) if len(last) == 1 and isinstance(last[0], lark.Token) else None
        if when and len(parts) == 2:
            kind = ("scheduled", [], parts[0], when.group(1))
        elif when and len(parts) == 3:
            kind = ("scheduled", parts[0], parts[1], when.group(1))
    node._kind = kind
    return kind


def _join(children: list, step: int, resolve) -> str:
    return "".join(_text_at(child, step, resolve) for child in children)


def _text_at(node, step: int, resolve) -> str:
    if isinstance(node, lark.Token):
        return str(node)
    if node.data == "round":
        return "(" + _join(node.children, step, resolve) + ")"
    if node.data == "square":
        kind = _square_kind(node)
        if kind is None:
            return "[" + _join(node.children, step, resolve) + "]"
        if kind[0] == "scheduled":
            _, before, after, when = kind
            return _join(before if step <= resolve(when) else after, step, resolve)
        options = kind[1]
        return _join(options[(step - 1) % len(options)], step, resolve)
    return _join(node.children, step, resolve)


def _step_resolver(steps: int, hires_steps: int | None, use_old_scheduling: bool):
    """`when` text -> step number, with A1111's rules.

    New rules: a number with a decimal point is a fraction of the steps, an
    integer is an absolute step. Old rules: below 1 is a fraction. With a
    hires pass, `when` counts through both passes (1.0 and `steps` mark the
    end of the first one) and the result is a step of the hires pass.
    """
    int_offset, float_offset, total = 0, 0.0, steps
    if hires_steps is not None and not use_old_scheduling:
        int_offset, float_offset, total = steps, 1.0, hires_steps

    def resolve(text: str) -> int:
        value = float(text)
        if use_old_scheduling:
            value = value * total if value < 1 else value
        elif "." in text:
            value = (value - float_offset) * total
        else:
            value = value - int_offset
        return int(min(total, value))  # min first: a 400-digit number is inf as a float

    return resolve, total


def _change_steps(tree, resolve, total: int) -> list[int]:
    """Steps at which the text may change: every `when` in range, every step when alternating."""
    ends = {total}
    for node in tree.iter_subtrees():
        kind = _square_kind(node) if node.data == "square" else None
        if kind is not None and kind[0] == "scheduled":
            when = resolve(kind[3])
            if when >= 1:
                ends.add(when)
        elif kind is not None:
            ends.update(range(1, total + 1))
    return sorted(ends)


def get_prompt_schedule(prompt: str, steps: int, hires_steps: int | None = None,
                        use_old_scheduling: bool = False) -> list[list]:
    """[[end_step, text], ...] for one prompt: `text` is used up to and including `end_step`."""
    resolve, total = _step_resolver(steps, hires_steps, use_old_scheduling)
    tree = _parse_schedule_tree(prompt)
    if tree is None:
        return [[total, prompt]]
    # like A1111, one entry per change step even when the text repeats ("[a|a]")
    return [[end, _text_at(tree, end, resolve)] for end in _change_steps(tree, resolve, total)]


def get_learned_conditioning_prompt_schedules(prompts, base_steps: int, hires_steps: int | None = None,
                                              use_old_scheduling: bool = False) -> list[list[list]]:
    """A1111's function: for each prompt, [[end_step, text], ...].

    >>> get_learned_conditioning_prompt_schedules(["a [b:c:0.5] d"], 10)
    [[[5, 'a b d'], [10, 'a c d']]]
    """
    return [get_prompt_schedule(p, base_steps, hires_steps, use_old_scheduling) for p in prompts]


def text_at_step(schedule: list[list], step: int) -> str:
    """The text a schedule uses at sampling step `step` (A1111 counts from 0 here: the first entry with step <= end)."""
    for end, text in schedule:
        if step <= end:
            return text
    return schedule[-1][1]


# ---------------------------------------------------------------- AND (composable diffusion)

_AND = re.compile(r"\bAND\b")
_SUBPROMPT_WEIGHT = re.compile(r"^((?:\s|.)*?)(?:\s*:\s*([-+]?(?:\d+\.?|\d*\.\d+)))?\s*$")


def split_and_weight(subprompt: str) -> tuple[str, float]:
    """'cat :1.5' -> ('cat', 1.5); no weight (or one too large for a float) -> (text, 1.0)."""
    match = _SUBPROMPT_WEIGHT.match(subprompt)
    if match is None:
        return subprompt, 1.0
    text, weight = match.groups()
    if weight is None or not math.isfinite(float(weight)):
        return (subprompt if weight is not None else text), 1.0
    return text, float(weight)


def get_multicond_prompt_list(prompts) -> tuple[list[list[tuple[int, float]]], list[str], dict[str, int]]:
    """A1111's function: split each prompt at `AND`.

    Returns (res_indexes, prompt_flat_list, prompt_indexes): per prompt a list
    of (index into prompt_flat_list, weight); the distinct sub-prompt texts;
    text -> index.
    """
    res_indexes, flat, indexes = [], [], {}
    for prompt in prompts:
        entry = []
        for subprompt in _AND.split(prompt):
            text, weight = split_and_weight(subprompt)
            if text not in indexes:
                indexes[text] = len(flat)
                flat.append(text)
            entry.append((indexes[text], weight))
        res_indexes.append(entry)
    return res_indexes, flat, indexes


# ---------------------------------------------------------------- A1111's conditioning helpers for extensions

class ScheduledPromptConditioning(NamedTuple):
    end_at_step: int
    cond: object              # text_encoding.Conditioning of one prompt


class ComposableScheduledPromptConditioning(NamedTuple):
    schedules: list           # [ScheduledPromptConditioning, ...]
    weight: float = 1.0


class MulticondLearnedConditioning(NamedTuple):
    shape: tuple              # (number of prompts,)
    batch: list               # per prompt: [ComposableScheduledPromptConditioning, ...]


def get_learned_conditioning(model, prompts, steps: int, hires_steps: int | None = None,
                             use_old_scheduling: bool = False) -> list[list[ScheduledPromptConditioning]]:
    """A1111's function on an Easel model: per prompt, its editing schedule with each text encoded (once)."""
    from modules import text_encoding  # text_encoding imports this module

    cache: dict = {}
    result = []
    for schedule in get_learned_conditioning_prompt_schedules(prompts, steps, hires_steps, use_old_scheduling):
        entries = []
        for end, text in schedule:
            if text not in cache:
                cache[text] = text_encoding.encode_prompts(model, [text])
            entries.append(ScheduledPromptConditioning(end, cache[text]))
        result.append(entries)
    return result


def get_multicond_learned_conditioning(model, prompts, steps: int, hires_steps: int | None = None,
                                       use_old_scheduling: bool = False) -> MulticondLearnedConditioning:
    """A1111's function on an Easel model: AND sub-prompts with weights, each with its encoded schedule."""
    res_indexes, flat, _ = get_multicond_prompt_list(prompts)
    learned = get_learned_conditioning(model, flat, steps, hires_steps, use_old_scheduling)
    batch = [[ComposableScheduledPromptConditioning(learned[i], weight) for i, weight in entry] for entry in res_indexes]
    return MulticondLearnedConditioning(shape=(len(prompts),), batch=batch)
