"""The progress bar HTML shown under the live preview while a job waits or runs.

Pure functions of a job's state so that they can be tested without a page:
the txt2img generator calls `progress_html` every time it polls the job.
"""
from __future__ import annotations

import html


def format_eta(seconds: float | None) -> str:
    """"ETA 1m 05s" style text; empty before the first step gives a rate."""
    if seconds is None:
        return ""
    seconds = max(0, int(round(seconds)))
    minutes, seconds = divmod(seconds, 60)
    return f"ETA {minutes}m {seconds:02d}s" if minutes else f"ETA {seconds}s"


def _bar(percent: float, text: str, css_class: str = "") -> str:
    percent = max(0.0, min(100.0, percent))
    return (
        f'<div class="easel-progress {css_class}" data-percent="{percent:.1f}">'
        f'<div class="easel-progress-bar" style="width: {percent:.1f}%"></div>'
        f'<span class="easel-progress-text">{html.escape(text)}</span></div>'
    )


def queued_html(place: int, length: int) -> str:
    """Shown while the job waits behind others: "In queue: 2/3"."""
    return _bar(0, f"In queue: {place}/{length}", "easel-queued")


def running_html(progress) -> str:
    """Bar width = fraction of the whole job; text = step, image number, ETA.

    `progress` is a `modules.jobs.JobState` (sampling_step, sampling_steps,
    job_no, job_count, fraction(), eta()).
    """
    parts = []
    if getattr(progress, "textinfo", ""):   # a job's own stage, e.g. img2img Batch's "Image 2/5: name.png"
        parts.append(progress.textinfo)
    if progress.job_count and progress.job_count > 1:
        parts.append(f"Batch {min(progress.job_no + 1, progress.job_count)}/{progress.job_count}")
    if progress.sampling_steps:
        parts.append(f"Step {progress.sampling_step}/{progress.sampling_steps}")
    else:
        parts.append("Starting…")
    eta = format_eta(progress.eta())
    if eta:
        parts.append(eta)
    return _bar(progress.fraction() * 100, " · ".join(parts), "easel-running")


def progress_html(job, position: tuple[int, int]) -> str:
    """The bar for a job in any state; `position` is `queue.position(job.id)`."""
    if job.status == "queued":
        place, length = position
        return queued_html(max(place, 1), max(length, 1))
    return running_html(job.progress)
