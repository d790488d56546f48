"""The Extensions tab (A1111's): "Installed" (table, enable/disable, update, remove) and "Install from URL".

The logic is in modules.extension_manager; this file only lays it out. The
table is HTML with one checkbox per extension (as in A1111): "Apply and
restart UI" collects the unchecked names in the browser, the server writes
them to config.json and restarts the process (modules.restart), and the page
polls /internal/ping until the new process answers, then reloads itself.
A1111's "Available" sub-tab needs its extension index from the internet, so
it is not offered.
"""
from __future__ import annotations

import html
import json

import gradio as gr

from modules import extension_manager as manager
from modules import extensions, restart, shared

# Runs in the browser before the Apply handler: the names whose checkbox is unchecked.
_COLLECT_JS = """(disabled, disableAll) => {
  const boxes = [...document.querySelectorAll('#extensions_table input.extension-enabled')];
  return [JSON.stringify(boxes.filter(b => !b.checked).map(b => b.dataset.extension)), disableAll];
}"""

# Runs after the Apply handler when it started a restart: cover the page, wait for a
# process with a new boot id on /internal/ping, then reload (the old page's state is stale).
_WAIT_AND_RELOAD_JS = """(bootId) => {
  if (!bootId) return;
  const cover = document.createElement('div');
  cover.id = 'easel_restarting';
  cover.style.cssText = 'position:fixed;inset:0;z-index:10000;display:flex;align-items:center;' +
    'justify-content:center;font:600 1.4em sans-serif;background:var(--background-fill-primary,#fff);' +
    'color:var(--body-text-color,#333)';
  cover.textContent = 'Restarting Easel (after the running jobs finish), then reloading this page...';
  document.body.appendChild(cover);
  const ping = new URL('internal/ping', document.baseURI).href;
  const poll = () => fetch(ping, {cache: 'no-store'})
    .then(r => r.ok ? r.json() : null)
    .then(d => { if (d && d.boot_id && d.boot_id !== bootId) location.reload(); else setTimeout(poll, 500); })
    .catch(() => setTimeout(poll, 500));
  setTimeout(poll, 500);
}"""

_COLUMNS = ("", "Extension", "URL", "Branch", "Version", "Date", "Type", "Load time", "Errors")


def _cell(value) -> str:
    return f"<td>{html.escape(str(value)) if value not in (None, '') else '&mdash;'}</td>"


def _load_cell(ext: manager.ExtensionInfo, switch: str) -> str:
    if ext.loaded:
        return _cell(f"{ext.load_seconds:.2f} s")
    if switch == "all" or (switch == "extra" and not ext.is_builtin):
        return _cell(f"not loaded ({'all' if switch == 'all' else 'extra'} extensions disabled)")
    if not ext.enabled:
        return _cell("disabled")
    return _cell("not loaded yet: restart to load")


def table_html(rows: list[manager.ExtensionInfo], switch: str, allowed: bool) -> str:
    if not rows:
        return '<div class="easel-note">No extensions are installed (folder: extensions/).</div>'
    head = "".join(f"<th>{html.escape(c)}</th>" for c in _COLUMNS)
    body = []
    for ext in rows:
        name = html.escape(ext.name, quote=True)
        checkbox = (f'<input type="checkbox" class="extension-enabled" data-extension="{name}" '
                    f'aria-label="enable {name}"{" checked" if ext.enabled else ""}{"" if allowed else " disabled"}>')
        label = html.escape(ext.display_name) + (f" <small>({html.escape(ext.name)})</small>"
                                                  if ext.display_name != ext.name else "")
        remote = (f'<a href="{html.escape(ext.remote, quote=True)}" target="_blank" rel="noreferrer">'
                  f"{html.escape(ext.remote)}</a>" if ext.remote and ext.remote.startswith(("https://", "http://"))
                  else html.escape(ext.remote or "") or "&mdash;")
        errors = "<br>".join(html.escape(e) for e in ext.errors) if ext.errors else ""
        body.append(
            f'<tr data-extension="{name}"><td>{checkbox}</td><td>{label}</td><td>{remote}</td>'
            + _cell(ext.branch) + _cell(ext.version) + _cell((ext.commit_date or "").replace("T", " ")[:19])
            + _cell("built-in" if ext.is_builtin else "installed") + _load_cell(ext, switch)
            + (f'<td class="easel-error">{errors}</td>' if errors else _cell(""))
            + "</tr>")
    return (f'<table class="easel-extensions-table" style="width:100%;border-collapse:collapse">'
            f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>")


def notices_html() -> str:
    """Why changes are refused here, and which start flag overrides the checkboxes (empty when neither)."""
    parts = []
    reason = manager.access_denied_reason(shared.cmd_opts)
    if reason:
        parts.append(f'<div class="easel-error" id="extensions_access_denied">{html.escape(reason)}</div>')
    if getattr(shared.cmd_opts, "disable_all_extensions", False):
        parts.append('<div class="easel-note">--disable-all-extensions was given: no extension is loaded, whatever '
                     "is checked below. Your choices are saved for the next start without that flag.</div>")
    elif getattr(shared.cmd_opts, "disable_extra_extensions", False):
        parts.append('<div class="easel-note">--disable-extra-extensions was given: only built-in extensions are '
                     "loaded, whatever is checked below.</div>")
    if not restart.available():
        parts.append(f'<div class="easel-note">Apply saves the choices; {html.escape(restart.unavailable_reason())}.'
                     "</div>")
    return "".join(parts)


def _message(text: str, error: bool = False) -> str:
    return f'<div class="{"easel-error" if error else "easel-note"}">{html.escape(text)}</div>'


def _rows():
    return manager.list_extensions(shared.paths, shared.opts)


def _switch() -> str:
    return extensions.effective_switch(shared.cmd_opts, shared.opts.disable_all_extensions)


class ExtensionsTab:
    def __init__(self):
        allowed = manager.access_denied_reason(shared.cmd_opts) is None
        table, choices = _table_and_choices()
        with gr.Tabs(elem_id="tabs_extensions"):
            with gr.Tab("Installed", id="extensions_installed", elem_id="tab_extensions_installed"):
                self.notices = gr.HTML(notices_html(), elem_id="extensions_notices")
                with gr.Row():
                    self.apply = gr.Button("Apply and restart UI", variant="primary", elem_id="extensions_apply",
                                           interactive=allowed, scale=0, min_width=220)
                    self.check_all = gr.Button("Check for updates", elem_id="extensions_check_all",
                                               interactive=allowed, scale=0, min_width=180)
                    self.disable_all = gr.Radio(
                        list(extensions.DISABLE_ALL_CHOICES), value=shared.opts.disable_all_extensions,
                        label="Disable all extensions", elem_id="extensions_disable_all", interactive=allowed)
                self.disabled_list = gr.Textbox(visible=False, elem_id="extensions_disabled_list")
                self.boot_id = gr.Textbox(visible=False, elem_id="extensions_restart_boot_id")
                self.table = gr.HTML(table, elem_id="extensions_table")
                with gr.Row(equal_height=True):
                    self.selected = gr.Dropdown(choices["choices"], value=choices["value"], label="Extension",
                                                elem_id="extensions_selected", scale=2)
                    self.check_one = gr.Button("Check for updates", elem_id="extensions_check", interactive=allowed)
                    self.update = gr.Button("Update", elem_id="extensions_update", interactive=allowed)
                    self.remove = gr.Button("Remove", variant="stop", elem_id="extensions_remove", interactive=allowed)
                    self.remove_confirm = gr.Button("Confirm removal", variant="stop", visible=False,
                                                    elem_id="extensions_remove_confirm")
                    self.remove_cancel = gr.Button("Cancel", visible=False, elem_id="extensions_remove_cancel")
                self.result = gr.HTML("", elem_id="extensions_result")
                self.pending_removal = gr.State("")   # the name the confirmation was asked for
            with gr.Tab("Install from URL", id="extensions_install", elem_id="tab_extensions_install"):
                self.url = gr.Textbox(label="URL for extension's git repository", elem_id="extensions_install_url",
                                      interactive=allowed)
                self.branch = gr.Textbox(label="Specific branch name", placeholder="Leave empty for the default branch",
                                         elem_id="extensions_install_branch", interactive=allowed)
                self.dirname = gr.Textbox(label="Local directory name",
                                          placeholder="Leave empty for the repository name",
                                          elem_id="extensions_install_dirname", interactive=allowed)
                self.install = gr.Button("Install", variant="primary", elem_id="extensions_install_button",
                                         interactive=allowed)
                self.install_result = gr.HTML("", elem_id="extensions_install_result")
        self._wire()

    def _wire(self) -> None:
        refreshed = [self.table, self.selected]
        self.apply.click(apply_and_restart, inputs=[self.disabled_list, self.disable_all],
                         outputs=[self.result, self.boot_id], js=_COLLECT_JS, show_progress="hidden") \
            .then(None, inputs=[self.boot_id], js=_WAIT_AND_RELOAD_JS)
        self.check_all.click(check_all_updates, outputs=[self.result], show_progress="minimal")
        self.check_one.click(check_one_update, inputs=[self.selected], outputs=[self.result], show_progress="minimal")
        self.update.click(update_one, inputs=[self.selected], outputs=[self.result, *refreshed])
        confirm_buttons = [self.remove_confirm, self.remove_cancel]
        # the confirmation is for the name shown in it, kept in a State: choosing another
        # extension in the dropdown meanwhile does not change what gets deleted
        self.remove.click(ask_remove, inputs=[self.selected],
                          outputs=[self.result, *confirm_buttons, self.pending_removal], show_progress="hidden")
        self.remove_cancel.click(lambda: ("", gr.update(visible=False), gr.update(visible=False), ""),
                                 outputs=[self.result, *confirm_buttons, self.pending_removal], show_progress="hidden")
        self.remove_confirm.click(remove_one, inputs=[self.pending_removal],
                                  outputs=[self.result, *refreshed, *confirm_buttons, self.pending_removal])
        self.install.click(install_from_url, inputs=[self.url, self.branch, self.dirname],
                           outputs=[self.install_result, *refreshed])

    def refresh_on_load(self, blocks: gr.Blocks) -> None:
        """Read the folders again whenever the page is opened (installs and removals happen on disk)."""
        blocks.load(refresh, outputs=[self.table, self.selected, self.notices, self.disable_all],
                    show_progress="hidden")


def _table_and_choices(selected: str | None = None):
    rows = _rows()
    names = [e.name for e in rows]
    allowed = manager.access_denied_reason(shared.cmd_opts) is None
    choice = selected if selected in names else (names[0] if names else None)
    return table_html(rows, _switch(), allowed), gr.update(choices=names, value=choice)


def refresh():
    table, choices = _table_and_choices()
    return table, choices, notices_html(), shared.opts.disable_all_extensions


def apply_and_restart(disabled_json: str, disable_all: str):
    """Save the checkboxes to config.json and restart; returns (message, old boot id or "" when not restarting)."""
    try:
        disabled = json.loads(disabled_json or "[]")
        if not isinstance(disabled, list):
            raise ValueError
    except ValueError:
        return _message("The page sent a malformed list of disabled extensions; reload the page.", True), ""
    try:
        saved = manager.set_enabled(shared.paths, shared.opts, shared.cmd_opts, disabled, disable_all or "none")
    except manager.ExtensionManagerError as exc:
        return _message(str(exc), True), ""
    summary = f"Saved: {len(saved)} extension(s) disabled" + (f" ({', '.join(saved)})" if saved else "") + \
        (f', disable all extensions: "{disable_all}"' if disable_all and disable_all != "none" else "") + "."
    try:
        restart.request(shared.queue)
    except RuntimeError as exc:
        return _message(f"{summary} Not restarted: {exc}.", True), ""
    return _message(f"{summary} Restarting..."), restart.BOOT_ID


def check_all_updates() -> str:
    """git fetch every extension that has a remote; one line each."""
    try:
        statuses = [manager.check_for_update(shared.paths, shared.cmd_opts, ext.name) for ext in _rows() if ext.remote]
    except manager.ExtensionManagerError as exc:
        return _message(str(exc), True)
    if not statuses:
        return _message("No installed extension has a git remote to check.")
    return "".join(_message(status.message, status.state == "error") for status in statuses)


def check_one_update(name: str) -> str:
    try:
        status = manager.check_for_update(shared.paths, shared.cmd_opts, name or "")
    except manager.ExtensionManagerError as exc:
        return _message(str(exc), True)
    return _message(status.message, status.state == "error")


def update_one(name: str):
    try:
        message = _message(manager.update(shared.paths, shared.cmd_opts, name or ""))
    except manager.ExtensionManagerError as exc:
        message = _message(str(exc), True)
    return (message, *_table_and_choices(name))


def ask_remove(name: str):
    """Show the confirmation (naming the folder) instead of deleting: (message, confirm, cancel, pending name)."""
    hidden = (gr.update(visible=False), gr.update(visible=False), "")
    if not name:
        return _message("Choose an extension first.", True), *hidden
    reason = manager.access_denied_reason(shared.cmd_opts)
    if reason:
        return _message(reason, True), *hidden
    try:
        if manager.find(shared.paths, name).is_builtin:
            return _message(f"{name}: built-in extensions cannot be removed (disable it instead)", True), *hidden
    except manager.ExtensionManagerError as exc:
        return _message(str(exc), True), *hidden
    return (_message(f"Delete the folder extensions/{name} and everything in it? This cannot be undone."),
            gr.update(visible=True, value=f"Confirm: remove {name}"), gr.update(visible=True), name)


def remove_one(name: str):
    try:
        message = _message(manager.remove(shared.paths, shared.cmd_opts, name or ""))
    except manager.ExtensionManagerError as exc:
        message = _message(str(exc), True)
    return (message, *_table_and_choices(), gr.update(visible=False), gr.update(visible=False), "")


def install_from_url(url: str, branch: str, dirname: str):
    try:
        done = manager.install(shared.paths, shared.cmd_opts, url, branch, dirname)
    except manager.ExtensionManagerError as exc:
        return (_message(str(exc), True), *_table_and_choices())
    parts = [_message(f"Installed {done.name} into extensions/{done.name}"
                      + (f" at {done.commit[:8]}" if done.commit else "")
                      + ". It loads after \"Apply and restart UI\" on the Installed tab.")]
    if done.install_ran:
        parts.append(_message("install.py ran" + ("" if done.install_ok else " and FAILED") + ":", not done.install_ok))
        parts.append(f'<pre id="extensions_install_output">{html.escape(done.install_output or "(no output)")}</pre>')
    return ("".join(parts), *_table_and_choices(done.name))
