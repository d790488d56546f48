"""Helpers for the browser tests: run the real app in a subprocess and drive Chromium.

Chromium comes from the system (/usr/bin/chromium); `playwright install` cannot
download here, so the executable path is given explicitly.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class AppProcess:
    """`app.py` running on a free port; its output goes to `log_path` for failure messages."""

    def __init__(self, ckpt_dir: Path, data_dir: Path, extra_args: tuple[str, ...] = ()):
        self.data_dir = Path(data_dir)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.log_path = Path(data_dir) / "app.log"
        env = dict(os.environ, HF_HUB_OFFLINE="1", GRADIO_ANALYTICS_ENABLED="False", PYTHONUNBUFFERED="1")
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "app.py", "--port", str(self.port), "--ckpt-dir", str(ckpt_dir),
             "--data-dir", str(data_dir), *extra_args],
            cwd=REPO, env=env, stdout=self._log, stderr=subprocess.STDOUT,
        )

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def wait_until_serving(self, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"app.py exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(self.url, timeout=5) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.5)
        raise TimeoutError(f"app.py did not serve {self.url} within {timeout} s:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=15)
        self._log.close()


@contextmanager
def chromium_page(viewport=(1400, 1000)):
    """A fresh headless Chromium page (closed afterwards)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": viewport[0], "height": viewport[1]})
            yield page
        finally:
            browser.close()


def wait_for_model_ready(page, timeout: float = 180) -> str:
    """Wait until the top bar's status says the checkpoint is loaded; returns the status text."""
    status = page.locator("#sd_model_status")
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        text = status.inner_text().strip()
        if text.startswith("Ready"):
            return text
        time.sleep(0.25)
    raise TimeoutError(f"model status never became Ready; last: {text!r}")


def set_slider(page, elem_id: str, value) -> None:
    """Type a value into the number box of a Gradio slider (what a user does to be exact)."""
    box = page.locator(f"#{elem_id} input[type=number]")
    box.fill(str(value))
    box.press("Enter")
    box.blur()


def set_number(page, elem_id: str, value) -> None:
    box = page.locator(f"#{elem_id} input")
    box.fill(str(value))
    box.press("Enter")
    box.blur()


# One snapshot of what the results column shows, read in a single round trip.
_SNAPSHOT_JS = """() => {
  const q = (s) => document.querySelector(s);
  const bar = q('#txt2img_progress .easel-progress-bar');
  const text = q('#txt2img_progress .easel-progress-text');
  const preview = q('#txt2img_preview img');
  const gallery = [...document.querySelectorAll('#txt2img_gallery img')].map(i => i.getAttribute('src'));
  const info = q('#txt2img_info');
  return {
    bar_width: bar ? bar.style.width : null,
    progress_text: text ? text.textContent : null,
    preview_src: preview ? preview.getAttribute('src') : null,
    gallery: gallery,
    info: info ? info.innerText : '',
  };
}"""


def snapshot(page) -> dict:
    return page.evaluate(_SNAPSHOT_JS)


def watch_generation(page, timeout: float = 240, on_snapshot=None) -> tuple[list[dict], dict]:
    """Poll the results column from just after Generate until the job has finished.

    Finished = the progress bar is gone and the info box or gallery changed.
    Returns (all snapshots taken while running, the final snapshot).
    `on_snapshot(snap)` may act during the run (e.g. press Interrupt).
    """
    seen: list[dict] = []
    started = False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        snap = snapshot(page)
        running = snap["progress_text"] is not None
        if running:
            started = True
            seen.append(snap)
            if on_snapshot is not None:
                on_snapshot(snap)
        elif started and snap["info"].strip():
            return seen, snap
        time.sleep(0.05)
    raise TimeoutError(f"generation did not finish within {timeout} s; last snapshot: {seen[-1:] or None}")


@contextmanager
def tiny_sd1_app(tmp_path_factory, extra_args: tuple[str, ...] = (), prepare=None):
    """app.py serving one tiny SD1 checkpoint from a fresh folder; stopped and cleaned up afterwards.

    prepare(data_dir) -> more command-line arguments: fills the data folder before the start.
    """
    import shutil

    from tests.factories import make_tiny_checkpoint

    ckpt_dir = tmp_path_factory.mktemp("checkpoints")
    data_dir = tmp_path_factory.mktemp("data")
    make_tiny_checkpoint(ckpt_dir, "sd1")
    if prepare is not None:
        extra_args = tuple(extra_args) + tuple(prepare(data_dir))
    server = AppProcess(ckpt_dir, data_dir, extra_args)
    try:
        server.wait_until_serving()
        yield server
    finally:
        server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)
