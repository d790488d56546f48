"""The page side of extension scripts: the "Script" dropdown, always-on sections, extension tabs, notices.

`create_script_components(runner)` is called inside a tab's settings column.
It calls every script's ui() and lays the returned components out as A1111
does: one collapsible section (gr.Accordion) per always-visible script, and a
"Script" dropdown that shows the chosen selectable script's components. The
returned list is the flat argument list (index 0: the dropdown, then each
script's components in [args_from, args_to)), which the Generate handler
passes on as `script_args`.
"""
from __future__ import annotations

import html

import gradio as gr

from modules import extensions, scripts


def _ui_components(runner: scripts.ScriptRunner, script: scripts.Script) -> list:
    """script.ui() as a list of components; a failing ui() is reported and gives no components."""
    try:
        controls = script.ui(runner.is_img2img)
    except Exception as exc:
        scripts._report(script.extension, f"{script.title()}.ui()", exc)
        return []
    if controls is None:
        return []
    if isinstance(controls, dict):
        controls = list(controls.values())
    if not isinstance(controls, (list, tuple)):
        controls = [controls]
    return [c for c in controls if isinstance(c, gr.components.Component)]


def _place(runner: scripts.ScriptRunner, script: scripts.Script) -> list:
    script.args_from = len(runner.inputs)
    controls = _ui_components(runner, script)
    runner.inputs.extend(controls)
    script.args_to = len(runner.inputs)
    script.controls = controls
    return controls


def create_script_components(runner: scripts.ScriptRunner) -> list:
    """Build the scripts' UI here (inside a Blocks context); returns the flat input component list."""
    runner.inputs = [None]
    tab = runner.tab
    for script in runner.alwayson_scripts:
        with gr.Accordion(script.title(), open=False, elem_id=script.elem_id("accordion"),
                          elem_classes=["easel-alwayson-script"]):
            _place(runner, script)

    dropdown = gr.Dropdown(label="Script", choices=["None", *runner.titles], value="None", type="index",
                           elem_id=f"{tab}_script_list" if runner.is_img2img else "script_list",
                           visible=bool(runner.selectable_scripts))
    groups = []
    for script in runner.selectable_scripts:
        with gr.Group(visible=False, elem_id=script.elem_id("group")) as group:
            _place(runner, script)
        groups.append(group)
    runner.inputs[0] = dropdown
    runner.layout_done = True

    if groups:
        def show_selected(index):
            return [gr.update(visible=(index == n + 1)) for n in range(len(groups))]

        dropdown.change(show_selected, inputs=[dropdown], outputs=groups, show_progress="hidden",
                        concurrency_limit=None)
    return list(runner.inputs)


def layout_offpage(runner: scripts.ScriptRunner) -> None:
    """For the API without the page (--nowebui): call ui() once, off-page, to learn argument slots and defaults."""
    with gr.Blocks(analytics_enabled=False):
        create_script_components(runner)


def extension_tabs() -> list:
    """Run the on_ui_tabs callbacks (outside any Blocks context, as in A1111): [(blocks, label, elem_id)]."""
    from modules import script_callbacks

    return script_callbacks.ui_tabs_callback()


def add_extension_tabs(tabs: list) -> None:
    """Inside gr.Tabs: one tab per (blocks, label, elem_id) from extension_tabs()."""
    for blocks, label, elem_id in tabs:
        try:
            with gr.Tab(label, id=elem_id, elem_id=f"tab_{elem_id}"):
                blocks.render()
        except Exception as exc:
            extensions.report_error(extensions.name_for_path(getattr(blocks, "__module__", "") or label),
                                    f"tab {label!r}", exc)


def notice_html() -> str:
    """The page notice listing extension errors (empty when none)."""
    if not extensions.errors:
        return ""
    items = "".join(
        f"<li><b>{html.escape(e.extension)}</b>: {html.escape(e.what)} failed: {html.escape(e.message)}"
        f" (skipped; traceback in the console)</li>"
        for e in extensions.errors[-10:])
    return f'<div class="easel-error easel-extension-errors"><b>Extension errors</b><ul>{items}</ul></div>'


def extension_notice(blocks: gr.Blocks) -> gr.HTML:
    """An HTML box at the top of the page, refreshed whenever the page is opened."""
    box = gr.HTML(notice_html(), elem_id="extension_errors")
    blocks.load(notice_html, outputs=[box], show_progress="hidden")
    return box
