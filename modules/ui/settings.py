"""The Settings tab: a few core settings from `shared.opts`, an Apply button.

Each setting's component follows its OptionInfo (A1111's rules): the option's
own component class if it names one, a dropdown when it has choices, a slider
when it has a range, a checkbox for booleans, a text box otherwise. Apply
validates every value through `opts.set` (which names the bad key and the
allowed values) and writes config.json.
"""
from __future__ import annotations

import html
import re

import gradio as gr

from modules import shared

# The settings shown, in page order (A1111 keys: extensions and API clients use them).
CORE_SETTINGS = [
    "CLIP_stop_at_last_layers",
    "show_progress_every_n_steps",
    "show_progress_type",
    "live_previews_enable",
    "precision",
    "samples_save",
    "samples_format",
]

_TAGS = re.compile(r"<[^>]+>")


def _component_for(key: str, info, value):
    args = info.component_args() if callable(info.component_args) else dict(info.component_args or {})
    note = html.unescape(_TAGS.sub("", info.comment_after or "")).strip() or None
    common = {"label": info.label or key, "value": value, "elem_id": f"setting_{key}", "interactive": True}
    if info.component is not None:
        return info.component(**common, **args)
    if "choices" in args:
        return gr.Dropdown(choices=list(args["choices"]), info=note, **common)
    if isinstance(info.default, bool):
        return gr.Checkbox(info=note, **common)
    if isinstance(info.default, (int, float)) and "minimum" in args and "maximum" in args:
        return gr.Slider(minimum=args["minimum"], maximum=args["maximum"], step=args.get("step", 1), info=note,
                         **common)
    if isinstance(info.default, (int, float)):
        return gr.Number(precision=0 if isinstance(info.default, int) else None, info=note, **common)
    return gr.Textbox(info=note, **common)


def apply_settings(keys: list[str], values: list) -> str:
    """Set each changed value, save config.json, and say what happened (HTML)."""
    changed, problems = [], []
    for key, value in zip(keys, values):
        try:
            if shared.opts.set(key, value):
                changed.append(shared.opts.data_labels[key].label or key)
        except ValueError as exc:
            problems.append(str(exc))
    if changed:
        shared.opts.save(shared.paths.config_file)
    parts = []
    if changed:
        parts.append(f"{len(changed)} setting{'s' if len(changed) != 1 else ''} changed: " + ", ".join(changed) + ".")
    elif not problems:
        parts.append("No settings changed.")
    parts += [f'<span class="easel-error">{html.escape(p)}</span>' for p in problems]
    return '<div class="easel-note">' + "<br>".join(p if p.startswith("<span") else html.escape(p) for p in parts) \
        + "</div>"


def extension_sections() -> list[tuple[str, list[str]]]:
    """(section title, keys) of settings that extensions registered (opts.add_option with a section)."""
    from modules.options import default_options

    builtin = set(default_options())
    sections: dict = {}
    for key, info in shared.opts.data_labels.items():
        if key in builtin or not info.section or len(info.section) < 2 or not info.section[1]:
            continue   # no section: an internal value, not shown (as in A1111)
        sections.setdefault(info.section[1], []).append(key)
    return list(sections.items())


class SettingsTab:
    def __init__(self, keys: list[str] = CORE_SETTINGS):
        self.keys = [k for k in keys if k in shared.opts.data_labels]
        sections = extension_sections()
        with gr.Row():
            self.apply = gr.Button("Apply settings", variant="primary", elem_id="settings_submit", scale=0,
                                   min_width=240)
        self.result = gr.HTML("", elem_id="settings_result")
        with gr.Column(elem_id="settings"):
            self.components = [
                _component_for(key, shared.opts.data_labels[key], getattr(shared.opts, key)) for key in self.keys
            ]
            for title, section_keys in sections:   # each extension's settings under its section title
                with gr.Group(elem_classes=["easel-settings-section"]):
                    gr.Markdown(f"### {title}")
                    for key in section_keys:
                        try:
                            component = _component_for(key, shared.opts.data_labels[key], getattr(shared.opts, key))
                        except Exception as exc:   # an extension's bad OptionInfo must not break the page
                            from modules import extensions

                            extensions.report_error(title, f"setting {key!r}", exc)
                            continue
                        self.components.append(component)
                        self.keys.append(key)
        keys = self.keys

        def apply(*values):
            message = apply_settings(keys, list(values))
            # show what is stored (a rejected value reverts to the stored one)
            return (message, *[getattr(shared.opts, key) for key in keys])

        self.apply.click(apply, inputs=self.components, outputs=[self.result, *self.components],
                         show_progress="hidden")

    def refresh_on_load(self, blocks: gr.Blocks) -> None:
        """Show the stored values whenever the page is opened (the API may have changed them)."""
        keys = self.keys
        blocks.load(lambda: [getattr(shared.opts, key) for key in keys], outputs=self.components,
                    show_progress="hidden")
