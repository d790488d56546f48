"""The Extensions tab in Chromium, against the real app.py in a subprocess (it restarts itself).

One session as a user has it: install an extension from a git URL (a bare
repository in tmp_path, cloned by file:// URL), see install.py's output,
uncheck an installed extension, press "Apply and restart UI"; the same server
process re-executes itself, the page waits and reloads, and then the new
extension's tab is there and the unchecked one's tab is gone; then remove one
(with its confirmation step).
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.browser_helpers import CHROMIUM, AppProcess, chromium_page, wait_for_model_ready
from tests.factories import make_tiny_checkpoint
from tests.test_extension_manager import make_remote

FIXTURES = Path(__file__).parent / "fixtures" / "extensions"


def test_install_disable_apply_and_restart_in_chromium(tmp_path):
    if not Path(CHROMIUM).exists():
        pytest.skip(f"needs Chromium at {CHROMIUM}")
    make_tiny_checkpoint(tmp_path / "ckpt", "sd1")
    for name in ("tab-and-saver", "selectable-run"):
        shutil.copytree(FIXTURES / name, tmp_path / "data" / "extensions" / name)
    _, bare = make_remote(tmp_path / "src")
    server = AppProcess(tmp_path / "ckpt", tmp_path / "data")
    try:
        server.wait_until_serving()
        pid = server.proc.pid
        with chromium_page() as page:
            page.goto(server.url)
            page.wait_for_selector("#tabs", timeout=60_000)
            assert page.get_by_role("tab", name="Saver Tab").count() == 1
            page.get_by_role("tab", name="Extensions").click()

            table = page.locator("#extensions_table")
            table.locator('tr[data-extension="tab-and-saver"]').wait_for(timeout=30_000)
            saver_row = table.locator('tr[data-extension="tab-and-saver"]')
            assert "installed" in saver_row.inner_text() and " s" in saver_row.inner_text()   # load time shown
            assert table.locator('tr[data-extension="selectable-run"]').count() == 1

            # Install from URL
            page.get_by_role("tab", name="Install from URL").click()
            page.locator("#extensions_install_url textarea, #extensions_install_url input").first.fill(bare.as_uri())
            page.locator("#extensions_install_button").click()
            result = page.locator("#extensions_install_result")
            result.get_by_text("Installed git-ext").wait_for(timeout=60_000)
            assert "hello from install.py of git-ext" in result.inner_text()

            # Installed: the new one is listed (not loaded yet); uncheck tab-and-saver; apply
            page.get_by_role("tab", name="Installed").click()
            new_row = table.locator('tr[data-extension="git-ext"]')
            new_row.wait_for(timeout=30_000)
            assert "restart to load" in new_row.inner_text()
            assert bare.as_uri() in new_row.inner_text() and "main" in new_row.inner_text()
            saver_row.locator("input.extension-enabled").uncheck()
            page.evaluate("() => { window.__beforeRestart = true; }")
            page.locator("#extensions_apply").click()
            page.wait_for_selector("#easel_restarting", timeout=30_000)
            page.wait_for_function("() => window.__beforeRestart === undefined && document.querySelector('#tabs')",
                                   timeout=180_000)

            assert server.proc.poll() is None and server.proc.pid == pid            # the same process, re-executed
            page.get_by_role("tab", name="Git Tab").wait_for(timeout=60_000)
            assert page.get_by_role("tab", name="Saver Tab").count() == 0
            page.get_by_role("tab", name="Git Tab").click()
            assert "Hello from the git tab" in page.locator("#git_tab_hello").inner_text()

            page.get_by_role("tab", name="Extensions").click()
            saver_row.wait_for(timeout=30_000)
            assert not saver_row.locator("input.extension-enabled").is_checked()
            assert "disabled" in saver_row.inner_text()
            assert new_row.locator("input.extension-enabled").is_checked()

            # Remove asks first, then deletes the folder and the row. The new process imports torch
            # and loads the model meanwhile, which can hold up the page's handlers on a busy machine.
            wait_for_model_ready(page)
            page.locator("#extensions_selected input").click()
            page.get_by_role("option", name="selectable-run").click()
            page.locator("#extensions_remove").click()
            page.locator("#extensions_result").get_by_text("Delete the folder extensions/selectable-run") \
                .wait_for(timeout=60_000)
            assert (tmp_path / "data" / "extensions" / "selectable-run").is_dir()
            page.locator("#extensions_remove_confirm").click()
            page.locator("#extensions_result").get_by_text("selectable-run: removed").wait_for(timeout=60_000)
            assert table.locator('tr[data-extension="selectable-run"]').count() == 0
            assert not (tmp_path / "data" / "extensions" / "selectable-run").exists()
        config = json.loads((tmp_path / "data" / "config.json").read_text())
        assert config["disabled_extensions"] == ["tab-and-saver"]
        log = server.log_tail(20000)
        assert "Restarting Easel:" in log and log.count("Running on local URL") == 2
    finally:
        server.stop()


def test_guard_message_and_refusal_with_listen_in_chromium(tmp_path):
    if not Path(CHROMIUM).exists():
        pytest.skip(f"needs Chromium at {CHROMIUM}")
    make_tiny_checkpoint(tmp_path / "ckpt", "sd1")
    shutil.copytree(FIXTURES / "tab-and-saver", tmp_path / "data" / "extensions" / "tab-and-saver")
    # --listen binds 0.0.0.0; the page is still opened through 127.0.0.1
    server = AppProcess(tmp_path / "ckpt", tmp_path / "data", ("--listen",))
    try:
        server.wait_until_serving()
        with chromium_page() as page:
            page.goto(server.url)
            page.wait_for_selector("#tabs", timeout=60_000)
            page.get_by_role("tab", name="Extensions").click()
            denied = page.locator("#extensions_access_denied")
            denied.wait_for(timeout=30_000)
            assert "--listen" in denied.inner_text() and "--enable-insecure-extension-access" in denied.inner_text()
            assert page.locator("#extensions_apply").is_disabled()
            assert page.locator('#extensions_table input[data-extension="tab-and-saver"]').is_disabled()
            page.get_by_role("tab", name="Install from URL").click()
            assert page.locator("#extensions_install_button").is_disabled()
    finally:
        server.stop()
