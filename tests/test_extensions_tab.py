"""The Extensions tab's handlers (what the page shows for each answer) and the restart they trigger.

The handlers are called directly with modules.shared pointed at a temporary
data dir; the full page, with a real restart, is driven in Chromium in
tests/test_browser_extensions.py.
"""
from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from modules import cmd_args, extensions, options, paths as paths_module, restart, script_callbacks, shared
from modules.jobs import JobQueue


@pytest.fixture
def tab_env(tmp_path, monkeypatch):
    """shared.* for a data dir with two extensions; restored afterwards."""
    def use(*flags):
        cmd_opts = cmd_args.parse_args(["--data-dir", str(tmp_path / "data"), *flags], environ={})
        paths = paths_module.from_cmd_opts(cmd_opts, repo=tmp_path / "repo")
        paths.ensure_dirs()
        for name in ("alpha", "beta<b>"):
            (Path(paths.extensions_dir) / name / "scripts").mkdir(parents=True, exist_ok=True)
        opts = options.Options()
        opts.load(paths.config_file)
        extensions.register_options(opts)
        for name, value in (("cmd_opts", cmd_opts), ("paths", paths), ("opts", opts)):
            monkeypatch.setattr(shared, name, value)
        return paths

    monkeypatch.setattr(restart, "_command", None)    # as under the tests' create_app: no self-restart
    return use


def test_table_lists_every_folder_escaped_with_its_state(tab_env):
    from modules.ui import extensions_tab

    tab_env()
    shared.opts.set("disabled_extensions", ["alpha"])
    table, choices = extensions_tab._table_and_choices()
    assert 'data-extension="beta&lt;b&gt;"' in table and "beta<b>" not in table   # escaped, never markup
    assert choices["choices"] == ["alpha", "beta<b>"]
    alpha = table.split('<tr data-extension="alpha">')[1].split("</tr>")[0]
    assert " checked" not in alpha and "disabled" in alpha        # unchecked, and says why it is not loaded
    beta = table.split('<tr data-extension="beta&lt;b&gt;">')[1].split("</tr>")[0]
    assert " checked" in beta and "restart to load" in beta


def test_apply_without_self_restart_saves_and_says_so(tab_env):
    from modules.ui import extensions_tab

    paths = tab_env()
    message, boot_id = extensions_tab.apply_and_restart(json.dumps(["alpha"]), "extra")
    assert boot_id == ""                                          # the page must not wait for a restart
    assert "Saved: 1 extension(s) disabled (alpha)" in message and 'disable all extensions: &quot;extra&quot;' in message
    assert "Not restarted" in message and "not started by app.py" in message
    saved = json.loads(Path(paths.config_file).read_text())
    assert saved["disabled_extensions"] == ["alpha"] and saved["disable_all_extensions"] == "extra"
    assert "not started by app.py" in extensions_tab.notices_html()


@pytest.mark.parametrize("sent, expected", [("not json", "malformed list"), ('{"a": 1}', "malformed list"),
                                            ('["ghost"]', "no extension named &#x27;ghost&#x27;")])
def test_apply_with_bad_input_changes_nothing(tab_env, sent, expected):
    from modules.ui import extensions_tab

    paths = tab_env()
    message, boot_id = extensions_tab.apply_and_restart(sent, "none")
    assert expected in message and "easel-error" in message and boot_id == ""
    assert not Path(paths.config_file).exists()


def test_guard_and_disable_flags_are_shown_and_enforced(tab_env):
    from modules.ui import extensions_tab

    paths = tab_env("--share", "--disable-extra-extensions")
    notices = extensions_tab.notices_html()
    assert 'id="extensions_access_denied"' in notices and "--share" in notices
    assert "--disable-extra-extensions was given" in notices
    table, _ = extensions_tab._table_and_choices()
    assert table.count(" disabled>") == 2                           # checkboxes cannot be changed
    assert "not loaded (extra extensions disabled)" in table
    message, boot_id = extensions_tab.apply_and_restart("[]", "none")
    assert "Changing extensions is disabled" in message and boot_id == ""
    result, *_ = extensions_tab.install_from_url("file:///x/y.git", "", "")
    assert "Changing extensions is disabled" in result
    result, *_ = extensions_tab.ask_remove("alpha")
    assert "Changing extensions is disabled" in result
    assert not Path(paths.config_file).exists() and (Path(paths.extensions_dir) / "alpha").is_dir()


def test_install_handler_shows_field_errors(tab_env):
    from modules.ui import extensions_tab

    tab_env()
    result, *_ = extensions_tab.install_from_url("file:///tmp/x.git", "", "../up")
    assert "Folder name: &#x27;../up&#x27; is not allowed" in result
    result, *_ = extensions_tab.install_from_url("", "", "")
    assert "URL: enter the address" in result


def test_remove_asks_for_confirmation_first(tab_env):
    from modules.ui import extensions_tab

    paths = tab_env()
    message, confirm, cancel, pending = extensions_tab.ask_remove("alpha")
    assert "Delete the folder extensions/alpha" in message and confirm["visible"] and cancel["visible"]
    assert pending == "alpha" and confirm["value"] == "Confirm: remove alpha"
    assert (Path(paths.extensions_dir) / "alpha").is_dir()           # nothing deleted by the first click
    message, *_ = extensions_tab.remove_one("alpha")
    assert "alpha: removed" in message and not (Path(paths.extensions_dir) / "alpha").exists()


# ---- the restart ------------------------------------------------------------------------

def test_restart_waits_for_the_running_job_then_execs_the_same_command(monkeypatch):
    execs, unloaded = [], []
    monkeypatch.setattr(restart.os, "execv", lambda exe, argv: execs.append((exe, list(argv))))
    monkeypatch.setattr(restart, "_command", None)
    monkeypatch.setattr(restart, "_pending", threading.Event())
    script_callbacks.on_script_unloaded(lambda: unloaded.append(time.monotonic()))
    queue = JobQueue()
    release = threading.Event()
    job = queue.submit(lambda job: release.wait(30), label="long job")
    try:
        with pytest.raises(RuntimeError, match="not started by app.py"):
            restart.request(queue)
        restart.enable(["/usr/bin/python3", "app.py", "--port", "7999"])
        restart.request(queue, delay_s=0.05)
        assert restart.pending()
        time.sleep(0.6)
        assert execs == [] and not job.finished                     # a job is running: no restart yet
        release.set()
        deadline = time.monotonic() + 10
        while not execs and time.monotonic() < deadline:
            time.sleep(0.05)
        assert job.status == "done"
        assert execs == [("/usr/bin/python3", ["/usr/bin/python3", "app.py", "--port", "7999"])]
        assert len(unloaded) == 1                                    # extensions were told first
    finally:
        release.set()
        queue.shutdown()
        script_callbacks.clear_callbacks()


def test_restart_enable_uses_this_interpreter_and_its_arguments(monkeypatch):
    import sys

    monkeypatch.setattr(restart, "_command", None)
    monkeypatch.setattr(sys, "orig_argv", ["python", "-X", "utf8", "app.py", "--listen"])
    restart.enable()
    assert restart._command == [sys.executable, "-X", "utf8", "app.py", "--listen"]


def test_check_all_then_update_from_the_page_handlers(tab_env, tmp_path):
    from modules.ui import extensions_tab
    from tests.test_extension_manager import git, make_remote, push_commit

    paths = tab_env()
    work, bare = make_remote(tmp_path / "src")
    git("clone", "-q", bare.as_uri(), str(Path(paths.extensions_dir) / "git-ext"))
    assert "git-ext: up to date" in extensions_tab.check_all_updates()
    new_commit = push_commit(work)
    checked = extensions_tab.check_all_updates()
    assert "git-ext: 1 new commit(s) on origin/main" in checked and "alpha" not in checked   # only git checkouts
    message, table, choices = extensions_tab.update_one("git-ext")
    assert f"-&gt; {new_commit[:8]}" in message and new_commit[:8] in table and choices["value"] == "git-ext"
    assert "not a git checkout" in extensions_tab.check_one_update("alpha")
