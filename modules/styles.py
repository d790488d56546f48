"""Prompt styles in styles.csv (A1111's file: columns name, prompt, negative_prompt).

A style's text joins the user's prompt: where the style contains
`{prompt}`, the prompt is put there; otherwise the style is appended after
", ". Applying several styles applies them in order. Saving is atomic
(temporary file + rename), so a crash never leaves half a file.
"""
from __future__ import annotations

import csv
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

FIELDS = ("name", "prompt", "negative_prompt")
PLACEHOLDER = "{prompt}"


@dataclass(frozen=True)
class PromptStyle:
    name: str
    prompt: str = ""
    negative_prompt: str = ""


def merge_prompts(style_prompt: str, prompt: str) -> str:
    """The style applied to `prompt` (A1111's rule)."""
    if PLACEHOLDER in style_prompt:
        return style_prompt.replace(PLACEHOLDER, prompt)
    return ", ".join(part for part in (prompt.strip(), style_prompt.strip()) if part)


def _unmerge(style_prompt: str, prompt: str) -> str | None:
    """`prompt` without the style, or None when the style is not applied in it."""
    style_prompt, prompt = style_prompt.strip(), prompt.strip()
    if PLACEHOLDER in style_prompt:
        before, _, after = style_prompt.partition(PLACEHOLDER)
        if prompt.startswith(before) and prompt.endswith(after) and len(prompt) >= len(before) + len(after):
            return prompt[len(before):len(prompt) - len(after)]
        return None
    if not style_prompt:
        return prompt
    if prompt == style_prompt:
        return ""
    if prompt.endswith(", " + style_prompt):
        return prompt[:-len(style_prompt) - 2]
    return None


class StyleDatabase:
    """The styles of one styles.csv, in file order."""

    def __init__(self, path):
        self.path = Path(path)
        self.styles: dict[str, PromptStyle] = {}
        self.reload()

    def reload(self) -> None:
        self.styles = {}
        if not self.path.is_file():
            return
        with open(self.path, encoding="utf-8-sig", newline="") as f:
            reader = csv.DictReader(f, skipinitialspace=True)
            if reader.fieldnames is None or "name" not in reader.fieldnames:
                raise ValueError(f"{self.path}: the first line must name the columns, starting with 'name' "
                                 f"(name,prompt,negative_prompt)")
            for row in reader:
                name = (row.get("name") or "").strip()
                if name:
                    self.styles[name] = PromptStyle(name, row.get("prompt") or "", row.get("negative_prompt") or "")

    def save(self, path=None) -> None:
        path = Path(path or self.path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".styles-", suffix=".csv")
        try:
            with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=FIELDS)
                writer.writeheader()
                for style in self.styles.values():
                    writer.writerow({"name": style.name, "prompt": style.prompt, "negative_prompt": style.negative_prompt})
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise

    def add(self, name: str, prompt: str = "", negative_prompt: str = "", save: bool = True) -> PromptStyle:
        """Add or replace a style."""
        name = (name or "").strip()
        if not name:
            raise ValueError("style name: must not be empty")
        style = PromptStyle(name, prompt or "", negative_prompt or "")
        self.styles[name] = style
        if save:
            self.save()
        return style

    def delete(self, name: str, save: bool = True) -> None:
        if name not in self.styles:
            raise KeyError(f"style {name!r} does not exist; styles: {', '.join(self.styles) or 'none'}")
        del self.styles[name]
        if save:
            self.save()

    def _selected(self, names) -> list[PromptStyle]:
        unknown = [n for n in names if n not in self.styles]
        if unknown:
            raise KeyError(f"unknown style(s): {', '.join(map(repr, unknown))}; styles: {', '.join(self.styles) or 'none'}")
        return [self.styles[n] for n in names]

    def get_style_prompts(self, names) -> list[str]:
        return [s.prompt for s in self._selected(names)]

    def get_negative_style_prompts(self, names) -> list[str]:
        return [s.negative_prompt for s in self._selected(names)]

    def apply_styles_to_prompt(self, prompt: str, names) -> str:
        for style in self._selected(names):
            prompt = merge_prompts(style.prompt, prompt)
        return prompt

    def apply_negative_styles_to_prompt(self, prompt: str, names) -> str:
        for style in self._selected(names):
            prompt = merge_prompts(style.negative_prompt, prompt)
        return prompt

    def extract_styles_from_prompt(self, prompt: str, negative_prompt: str) -> tuple[list[str], str, str]:
        """Styles that, applied to the returned prompts, give these prompts back (last applied found first)."""
        found = []
        changed = True
        while changed:
            changed = False
            for style in self.styles.values():
                if style.name in found or not (style.prompt or style.negative_prompt):
                    continue
                positive = _unmerge(style.prompt, prompt)
                negative = _unmerge(style.negative_prompt, negative_prompt)
                if positive is not None and negative is not None:
                    found.append(style.name)
                    prompt, negative_prompt, changed = positive, negative, True
                    break
        return list(reversed(found)), prompt, negative_prompt
