"""The live objects that A1111 extensions import: opts, cmd_opts, state, sd_model.

A thin facade: app.py fills it in once at start-up (`init`). The objects
themselves live in their own modules; nothing here computes anything.
`state` always reads the job running on the worker thread.
"""
from __future__ import annotations

import sys

from modules import jobs
from modules.options import OptionInfo, Options  # noqa: F401  (extensions import OptionInfo from here)

cmd_opts = None
opts = None
paths = None
queue: jobs.JobQueue | None = None
models = None
device = None


class _StateProxy:
    """`shared.state`: forwards to the state of the job being run (A1111 attribute names)."""

    def __getattr__(self, name):
        return getattr(_state(), name)

    def __setattr__(self, name, value):
        setattr(_state(), name, value)


def _state():
    if queue is not None and queue.current is not None:
        return queue.current.progress
    return queue.current_state() if queue is not None else _idle


_idle = jobs.JobState()
state = _StateProxy()


def has_queue() -> bool:
    return queue is not None


def init(**objects) -> None:
    """Install the live objects (called by app.py and by tests)."""
    module = sys.modules[__name__]
    for name, value in objects.items():
        if not hasattr(module, name):
            raise AttributeError(f"modules.shared has no slot {name!r}")
        setattr(module, name, value)


def __getattr__(name):
    if name == "sd_model":
        return models.current if models is not None else None
    raise AttributeError(f"module 'modules.shared' has no attribute {name!r}")
