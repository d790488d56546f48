"""Prompt styles on a tab: choose styles, apply them to the prompt boxes, save, edit and delete them.

The styles live in styles.csv (shared.paths.styles_file, modules/styles.py);
every action re-reads the file, so an edit made by hand, from another tab or
by another user is seen at once. Styles still selected when Generate is
pressed are applied to that job's prompts (`apply_to_processing`), as A1111
does with `p.styles`; 📋 writes them into the boxes instead and clears the
selection, so they are never applied twice.
"""
from __future__ import annotations

import html

import gradio as gr

from modules import shared
from modules.styles import StyleDatabase


def database() -> StyleDatabase:
    if shared.paths is None:
        raise ValueError("styles: the app's paths are not set up (modules.shared.paths)")
    return StyleDatabase(shared.paths.styles_file)


def style_names(db: StyleDatabase | None = None) -> list[str]:
    return list((db or database()).styles)


def apply_styles(prompt: str, negative_prompt: str, names, db: StyleDatabase | None = None) -> tuple[str, str]:
    """The prompts with the styles applied in order; ValueError naming an unknown style."""
    db = db or database()
    names = list(names or [])
    try:
        return (db.apply_styles_to_prompt(prompt or "", names),
                db.apply_negative_styles_to_prompt(negative_prompt or "", names))
    except KeyError as exc:
        raise ValueError(f"styles: {exc.args[0]}") from None


def apply_to_processing(p, names):
    """Record the chosen styles on p (A1111's `p.styles`); process_images merges them into the prompts."""
    p.styles = list(names or [])
    return p


def save_style(name: str, prompt: str, negative_prompt: str, db: StyleDatabase | None = None) -> str:
    """Add or replace a style and write styles.csv; returns what to tell the user."""
    db = db or database()
    name = (name or "").strip()
    if not name:
        raise ValueError("style name: type a name first")
    if not (prompt or "").strip() and not (negative_prompt or "").strip():
        raise ValueError(f"style {name!r}: both prompts are empty, nothing to save")
    existed = name in db.styles
    db.add(name, prompt or "", negative_prompt or "")
    return f"{'Updated' if existed else 'Saved'} style {name!r}"


def delete_style(name: str, db: StyleDatabase | None = None) -> str:
    db = db or database()
    name = (name or "").strip()
    try:
        db.delete(name)
    except KeyError as exc:
        raise ValueError(f"style name: {exc.args[0]}") from None
    return f"Deleted style {name!r}"


def load_style(name: str, db: StyleDatabase | None = None) -> tuple[str, str]:
    db = db or database()
    style = db.styles.get((name or "").strip())
    if style is None:
        raise ValueError(f"style name: {name!r} does not exist; styles: {', '.join(db.styles) or 'none'}")
    return style.prompt, style.negative_prompt


def _message(text: str, error: bool = False) -> str:
    return f'<div class="{"easel-error" if error else "easel-note"}">{html.escape(text)}</div>'


class StylesUI:
    """The styles row (dropdown, 🔄, 📋) and the "Edit styles" accordion of one tab."""

    def __init__(self, tab: str):
        self.tab = tab
        try:
            names = style_names()
        except ValueError:  # a malformed styles.csv must not stop the page from starting
            names = []
        with gr.Row(equal_height=True):
            self.dropdown = gr.Dropdown(label="Styles", choices=names, value=[], multiselect=True,
                                        elem_id=f"{tab}_styles", scale=4, min_width=100)
            self.refresh = gr.Button("🔄", elem_id=f"{tab}_styles_refresh", scale=0, min_width=40,
                                     elem_classes=["easel-tool"])
            self.apply = gr.Button("📋", elem_id=f"{tab}_style_apply", scale=0, min_width=40,
                                   elem_classes=["easel-tool"])
        with gr.Accordion("Edit styles", open=False, elem_id=f"{tab}_styles_edit"):
            self.name = gr.Textbox(label="Style name", elem_id=f"{tab}_style_name", max_lines=1)
            self.style_prompt = gr.Textbox(label="Style prompt", elem_id=f"{tab}_style_prompt", lines=2,
                                           placeholder="{prompt} marks where your prompt goes")
            self.style_negative = gr.Textbox(label="Style negative prompt", elem_id=f"{tab}_style_neg_prompt",
                                             lines=2)
            with gr.Row():
                self.save_current = gr.Button("Save prompt as style", elem_id=f"{tab}_style_create", size="sm")
                self.load = gr.Button("Load", elem_id=f"{tab}_style_load", size="sm")
                self.save = gr.Button("Save", elem_id=f"{tab}_style_save", size="sm")
                self.delete = gr.Button("Delete", elem_id=f"{tab}_style_delete", size="sm")
            self.message = gr.HTML("", elem_id=f"{tab}_style_message", js_on_load=None)

    def wire(self, prompt: gr.Textbox, negative_prompt: gr.Textbox) -> None:
        def choices_update(selected=None):
            names = style_names()
            kept = [n for n in (selected or []) if n in names]
            return gr.update(choices=names, value=kept)

        def guarded(action):
            """Run `action`; a ValueError becomes the message (and a warning), the rest is left unchanged."""
            def run(*args):
                try:
                    return action(*args)
                except ValueError as exc:
                    gr.Warning(str(exc))
                    return (_message(str(exc), error=True),) + (gr.skip(),) * (run.outputs - 1)
            return run

        def refresh(selected):
            return choices_update(selected)

        def apply(prompt_text, negative_text, selected):
            new_prompt, new_negative = apply_styles(prompt_text, negative_text, selected)
            return "", new_prompt, new_negative, gr.update(value=[])

        def save_current(name, prompt_text, negative_text, selected):
            text = save_style(name, prompt_text, negative_text)
            return _message(text), choices_update(selected), prompt_text, negative_text

        def save_edited(name, style_prompt, style_negative, selected):
            return _message(save_style(name, style_prompt, style_negative)), choices_update(selected)

        def load(name):
            style_prompt, style_negative = load_style(name)
            return "", style_prompt, style_negative

        def delete(name, selected):
            return _message(delete_style(name)), choices_update(selected)

        common = dict(show_progress="hidden", concurrency_limit=None)
        self.refresh.click(refresh, inputs=[self.dropdown], outputs=[self.dropdown], **common)
        for button, action, inputs, outputs in (
            (self.apply, apply, [prompt, negative_prompt, self.dropdown],
             [self.message, prompt, negative_prompt, self.dropdown]),
            (self.save_current, save_current, [self.name, prompt, negative_prompt, self.dropdown],
             [self.message, self.dropdown, self.style_prompt, self.style_negative]),
            (self.load, load, [self.name], [self.message, self.style_prompt, self.style_negative]),
            (self.save, save_edited, [self.name, self.style_prompt, self.style_negative, self.dropdown],
             [self.message, self.dropdown]),
            (self.delete, delete, [self.name, self.dropdown], [self.message, self.dropdown]),
        ):
            handler = guarded(action)
            handler.outputs = len(outputs)
            button.click(handler, inputs=inputs, outputs=outputs, **common)
