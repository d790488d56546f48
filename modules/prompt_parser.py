"""A1111's prompt language (REFERENCE section 3).

For now: emphasis, parse_prompt_attention(). Prompt editing, alternation
and AND come later in this file.
"""

from __future__ import annotations

import re

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
        elif weight is not None and open_round and _is_number(weight):
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
