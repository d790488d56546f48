"""Restart the server process in place: the same command line, the same process id, a fresh interpreter.

Why a process restart and not an in-process UI reload: the Gradio page is a
Blocks object mounted once on the FastAPI app, whose queue and startup events
are tied to the app's lifespan; and an extension that is disabled or removed
cannot be unloaded from a running interpreter (its imported modules, FastAPI
routes added in on_app_started, monkey-patches and model hooks stay). Re-exec
gives every start the state `app.py` would give it.

`enable()` is called by app.main() only: a server built some other way (the
tests' create_app + TestClient) cannot restart itself and says so.

The restart waits until the job queue is idle (the running and queued jobs
finish), runs the extensions' script_unloaded callbacks, then os.execv()s.
The page learns that the new process answers by polling /internal/ping until
its boot_id differs from the one it saw before (A1111 polls the same path).
"""
from __future__ import annotations

import logging
import os
import sys
import threading
import time
import uuid

log = logging.getLogger(__name__)

BOOT_ID = uuid.uuid4().hex          # new for every process start (also after execv)
PING_PATH = "/internal/ping"
IDLE_POLL_S = 0.2

_command: list[str] | None = None
_cwd: str | None = None
_pending = threading.Event()


def enable(argv: list[str] | None = None) -> None:
    """Remember how this process was started, so that it can be started again the same way."""
    global _command, _cwd
    if argv is None:
        # sys.orig_argv keeps interpreter options (-X, -m ...); [0] may be a bare "python"
        argv = [sys.executable, *getattr(sys, "orig_argv", [sys.executable, *sys.argv])[1:]]
    _command = list(argv)
    _cwd = os.getcwd()


def available() -> bool:
    return _command is not None


def pending() -> bool:
    return _pending.is_set()


def unavailable_reason() -> str:
    return ("this server was not started by app.py (webui.sh), so it cannot restart itself: "
            "stop it and start it again to apply the change")


def install_routes(app) -> None:
    """GET /internal/ping -> {"boot_id", "restarting"}; the page polls it across a restart."""
    @app.get(PING_PATH, include_in_schema=False)
    def ping():
        return {"boot_id": BOOT_ID, "restarting": pending()}


def request(queue=None, delay_s: float = 0.5) -> None:
    """Restart soon: after `delay_s` (lets the HTTP answer reach the page) and once `queue` is idle.

    Raises RuntimeError when this process cannot restart itself (see enable()).
    """
    if not available():
        raise RuntimeError(unavailable_reason())
    if _pending.is_set():
        return
    _pending.set()
    threading.Thread(target=_restart_when_idle, args=(queue, delay_s), name="easel-restart", daemon=True).start()


def _queue_idle(queue) -> bool:
    return queue is None or (queue.current is None and not queue.queued())


def _restart_when_idle(queue, delay_s: float) -> None:
    time.sleep(delay_s)
    announced = False
    while not _queue_idle(queue):
        if not announced:
            print("Restart requested: waiting for the running and queued jobs to finish", flush=True)
            announced = True
        time.sleep(IDLE_POLL_S)
    try:
        from modules import script_callbacks

        script_callbacks.script_unloaded_callback()
    except Exception:  # an extension's cleanup must not prevent the restart
        log.exception("script_unloaded callbacks failed; restarting anyway")
    print(f"Restarting Easel: {' '.join(_command)}", flush=True)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    if _cwd:
        os.chdir(_cwd)
    # The listening socket is not inheritable (PEP 446), so it closes here and the new process can bind the port.
    try:
        os.execv(_command[0], _command)
    except OSError:
        log.exception("restart failed: could not run %s; this process keeps serving", _command[0])
        _pending.clear()
