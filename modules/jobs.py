"""One FIFO queue and one worker thread that owns the model.

The page and the API only submit jobs and read their progress; no request
handler touches the model. Each job has an id (A1111's `id_task` /
`force_task_id`) and a `JobState` whose attribute names are those of A1111's
`shared.state`, so extensions reading `shared.state.sampling_step` see the
running job.
"""
from __future__ import annotations

import logging
import threading
import time
import traceback
import uuid
from collections import deque
from typing import Any, Callable

log = logging.getLogger(__name__)

_local = threading.local()   # the job running on this thread (set by the worker)


def current_state() -> "JobState":
    """State of the job running on this thread; a fresh one outside any worker
    (so a direct process_images call never inherits an old interrupt flag)."""
    job = getattr(_local, "job", None)
    return job.progress if job is not None else JobState()


class JobInterrupted(Exception):
    """Raised inside a job when the user pressed Interrupt (images so far are kept)."""


class JobState:
    """Progress of one job; A1111's `shared.state` names."""

    def __init__(self, job: str = ""):
        self.job = job
        self.job_no = 0            # index of the current batch (n_iter)
        self.job_count = 0
        self.sampling_step = 0
        self.sampling_steps = 0
        self.interrupted = False
        self.skipped = False
        self.job_timestamp = time.strftime("%Y%m%d%H%M%S")
        self.started_at: float | None = None
        self.textinfo = ""
        self.preview = None        # PIL image of the latest live preview
        self.preview_id = 0        # increments with every new preview
        self._lock = threading.Lock()

    # A1111 names
    def interrupt(self) -> None:
        self.interrupted = True

    def skip(self) -> None:
        self.skipped = True

    def set_preview(self, image) -> None:
        with self._lock:
            self.preview = image
            self.preview_id += 1

    def fraction(self) -> float:
        """Progress of the whole job in [0, 1]."""
        if not self.job_count or not self.sampling_steps:
            return 0.0
        done = self.job_no + min(self.sampling_step, self.sampling_steps) / self.sampling_steps
        return max(0.0, min(1.0, done / self.job_count))

    def eta(self) -> float | None:
        """Seconds left, extrapolated from the elapsed time; None before the first step."""
        fraction = self.fraction()
        if self.started_at is None or fraction <= 0:
            return None
        elapsed = time.monotonic() - self.started_at
        return elapsed * (1 - fraction) / fraction

    def dict(self) -> dict:
        return {
            "skipped": self.skipped, "interrupted": self.interrupted, "job": self.job,
            "job_count": self.job_count, "job_timestamp": self.job_timestamp, "job_no": self.job_no,
            "sampling_step": self.sampling_step, "sampling_steps": self.sampling_steps,
        }


class Job:
    def __init__(self, fn: Callable[["Job"], Any], task_id: str | None, label: str):
        self.id = task_id or f"task({uuid.uuid4().hex[:15]})"
        self.fn = fn
        self.label = label
        self.status = "queued"     # queued | running | done | failed | interrupted | cancelled
        self.progress = JobState(label)
        self.result: Any = None
        self.error: str | None = None
        self.submitted_at = time.time()
        self._done = threading.Event()

    @property
    def finished(self) -> bool:
        return self._done.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        return self._done.wait(timeout)

    def _finish(self, status: str) -> None:
        self.status = status
        self._done.set()


class JobQueue:
    """FIFO of jobs run one at a time on a single worker thread."""

    def __init__(self, history: int = 200):
        self._queue: deque[Job] = deque()
        self._jobs: dict[str, Job] = {}
        self._finished_order: deque[str] = deque()
        self._history = history
        self._cond = threading.Condition()
        self.current: Job | None = None
        self._thread: threading.Thread | None = None
        self._stopping = False

    # -- submitting and looking up -------------------------------------------------
    def submit(self, fn: Callable[[Job], Any], task_id: str | None = None, label: str = "job") -> Job:
        """Queue `fn(job)`; its return value becomes `job.result`."""
        job = Job(fn, task_id, label)
        with self._cond:
            if job.id in self._jobs and not self._jobs[job.id].finished:
                raise ValueError(f"task id {job.id!r} is already queued or running")
            self._jobs[job.id] = job
            self._queue.append(job)
            self._ensure_worker()
            self._cond.notify_all()
        return job

    def get(self, job_id: str) -> Job | None:
        return self._jobs.get(job_id)

    def position(self, job_id: str) -> tuple[int, int]:
        """(1-based place among queued jobs, number queued); (0, n) when not queued."""
        with self._cond:
            ids = [j.id for j in self._queue]
        return (ids.index(job_id) + 1 if job_id in ids else 0, len(ids))

    def queued(self) -> list[Job]:
        with self._cond:
            return list(self._queue)

    def cancel(self, job_id: str) -> bool:
        """Remove a job that has not started; False when it is running or gone."""
        with self._cond:
            for job in self._queue:
                if job.id == job_id:
                    self._queue.remove(job)
                    job._finish("cancelled")
                    self._remember(job)
                    return True
        return False

    def interrupt(self, job_id: str | None = None) -> None:
        """Stop the running job (or the named one) at the next step; finished images are kept."""
        job = self.current
        if job is not None and (job_id is None or job.id == job_id):
            job.progress.interrupt()
        elif job_id is not None:
            self.cancel(job_id)

    def skip(self, job_id: str | None = None) -> None:
        """End the current image and go on with the rest of the batch."""
        job = self.current
        if job is not None and (job_id is None or job.id == job_id):
            job.progress.skip()

    def current_state(self) -> JobState:
        return current_state()

    # -- the worker ---------------------------------------------------------------
    def _ensure_worker(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="easel-worker", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._stopping:
                    self._cond.wait()
                if self._stopping:
                    return
                job = self._queue.popleft()
                self.current = job
            self._execute(job)
            with self._cond:
                self.current = None
                self._remember(job)
                self._cond.notify_all()

    def _execute(self, job: Job) -> None:
        job.status = "running"
        job.progress.started_at = time.monotonic()
        _local.job = job
        try:
            job.result = job.fn(job)
            job._finish("interrupted" if job.progress.interrupted else "done")
        except JobInterrupted:
            job._finish("interrupted")
        except Exception as exc:  # a failed job must never take the worker down
            job.error = f"{type(exc).__name__}: {exc}"
            log.error("job %s failed:\n%s", job.id, traceback.format_exc())
            job._finish("failed")
        finally:
            _local.job = None

    def _remember(self, job: Job) -> None:
        self._finished_order.append(job.id)
        while len(self._finished_order) > self._history:
            self._jobs.pop(self._finished_order.popleft(), None)

    def run_now(self, fn: Callable[[Job], Any], label: str = "job", timeout: float | None = None) -> Any:
        """Submit and wait; re-raise the job's error as RuntimeError."""
        job = self.submit(fn, label=label)
        job.wait(timeout)
        if job.status == "failed":
            raise RuntimeError(job.error)
        return job.result

    def shutdown(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()


