"""X/Y/Z plot value lists, A1111's syntax.

- Items are comma-separated and read with CSV rules (`"a, b", c` is two
  items; surrounding spaces are dropped; empty items are skipped).
- Whole numbers: `1-5` (1,2,3,4,5), `1-10 (+2)` (step: 1,3,5,7,9),
  `10-20 [3]` (count, evenly spaced: 10,15,20). Decimals take the same forms
  (`0.5-1.5 (+0.5)`, `5-10 [3]`). Ends are inclusive; a range may go down
  (`5-1`, `10-1 (-3)`).
"""
from __future__ import annotations

import csv
import io
import math
import re

_NUM = r"[+-]?\s*\d+(?:\.\d*)?"
_RANGE_STEP = re.compile(rf"^\s*({_NUM})\s*-\s*({_NUM})\s*\(\s*({_NUM})\s*\)\s*$")
_RANGE_COUNT = re.compile(rf"^\s*({_NUM})\s*-\s*({_NUM})\s*\[\s*(\d+)\s*\]\s*$")
_RANGE = re.compile(rf"^\s*({_NUM})\s*-\s*({_NUM})\s*$")


def split_items(text: str) -> list[str]:
    """Comma-separated items with CSV quoting; spaces around items and empty items dropped."""
    text = str(text or "")
    rows = csv.reader(io.StringIO(text), skipinitialspace=True)
    return [item.strip() for row in rows for item in row if item.strip()]


def _number(text: str, kind):
    try:
        return kind(text.replace(" ", ""))
    except ValueError:
        raise ValueError(f"{text.strip()!r} is not a whole number") from None


def _expand(item: str, kind) -> list | None:
    """The numbers of one range item, or None when the item is not a range."""
    match = _RANGE_COUNT.match(item)
    if match:
        start, end = _number(match.group(1), float), _number(match.group(2), float)
        count = int(match.group(3))
        if count < 1:
            raise ValueError(f"{item!r}: the count in [..] must be at least 1")
        if count == 1:
            values = [start]
        else:
            values = [start + (end - start) * i / (count - 1) for i in range(count)]
        return [int(v) for v in values] if kind is int else [round(v, 8) for v in values]
    match = _RANGE_STEP.match(item) or _RANGE.match(item)
    if not match:
        return None
    start, end = _number(match.group(1), kind), _number(match.group(2), kind)
    if match.re is _RANGE_STEP:
        step = _number(match.group(3), kind)
        if step == 0:
            raise ValueError(f"{item!r}: the step in (..) must not be 0")
    else:
        step = kind(1) if end >= start else kind(-1)
    if (end - start) * step < 0:
        raise ValueError(f"{item!r}: the step {step} goes away from {end}")
    count = int(math.floor((end - start) / step + 1e-9)) + 1
    if count > 10000:
        raise ValueError(f"{item!r}: {count} values is too many")
    values = [start + step * i for i in range(count)]
    return [int(v) for v in values] if kind is int else [round(v, 8) for v in values]


def parse_numbers(text: str, kind) -> list:
    """Whole numbers (kind=int) or decimals (kind=float) with ranges; ValueError names the bad item."""
    values = []
    for item in split_items(text):
        expanded = _expand(item, kind)
        if expanded is not None:
            values.extend(expanded)
            continue
        try:
            values.append(kind(item) if kind is float else int(item))
        except ValueError:
            what = "a whole number" if kind is int else "a number"
            raise ValueError(f"{item!r} is not {what} or a range such as 1-5, 1-10 (+2), 10-20 [3]") from None
    return values
