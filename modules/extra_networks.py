"""Extra-network tags in prompts: `<lora:name:weight>` and friends (A1111's names and shapes).

A tag is `<type:arg1:arg2...>`; arguments with `=` are named (`te=0.5`).
Tags are removed from the text before it is encoded; the caller activates
the networks they name (modules/lora.py for `lora`). Unknown types are
removed too and reported, never an error.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

TAG = re.compile(r"<(\w+):([^>]+)>")
KNOWN_TYPES = ("lora",)


@dataclass
class ExtraNetworkParams:
    """One tag's arguments: `items` as written, split into positional and named (A1111's class)."""
    items: list = field(default_factory=list)
    positional: list = field(default_factory=list)
    named: dict = field(default_factory=dict)

    def __post_init__(self):
        for item in self.items:
            key, eq, value = item.partition("=")
            if eq:
                self.named[key.strip()] = value.strip()
            else:
                self.positional.append(item.strip())

    def __eq__(self, other):
        return isinstance(other, ExtraNetworkParams) and self.items == other.items


def parse_prompt(prompt: str) -> tuple[str, dict[str, list[ExtraNetworkParams]]]:
    """(prompt without tags, {type: [params, ...]})."""
    found: dict[str, list[ExtraNetworkParams]] = {}

    def take(match: re.Match) -> str:
        found.setdefault(match.group(1), []).append(ExtraNetworkParams(items=match.group(2).split(":")))
        return ""

    return TAG.sub(take, prompt), found


def parse_prompts(prompts: list[str]) -> tuple[list[str], dict[str, list[ExtraNetworkParams]]]:
    """A1111's function: every prompt without its tags, and the networks of the first prompt with any
    (a batch runs with one set of networks)."""
    texts, data = [], None
    for prompt in prompts:
        text, found = parse_prompt(prompt)
        texts.append(text)
        if data is None and found:
            data = found
    return texts, data or {}


def merge(*datas: dict) -> dict[str, list[ExtraNetworkParams]]:
    """Several {type: [params]} dicts as one, without repeating identical tags."""
    merged: dict[str, list[ExtraNetworkParams]] = {}
    for data in datas:
        for kind, params in data.items():
            bucket = merged.setdefault(kind, [])
            bucket.extend(p for p in params if p not in bucket)
    return merged


def unknown_type_warnings(data: dict) -> list[str]:
    return [f"<{kind}:...>: extra networks of type {kind!r} are not supported; the tag was ignored"
            for kind in data if kind not in KNOWN_TYPES]
