"""Submit a Processing job from a tab and stream its previews, progress and result (shared by the tabs).

Outputs of every yield, in order: preview, progress, gallery, info,
infotexts, selected — the txt2img tab's layout, whose helpers this reuses.
"""
from __future__ import annotations

import gradio as gr

from modules import shared
from modules.ui.progress import progress_html
from modules.ui.txt2img import POLL_SECONDS, _finish, _remember_job, error_html


def run_processing(make_processing, label: str, request: gr.Request | None, run=None):
    """`make_processing()` builds the Processing object (ValueError/TypeError = bad input, shown, nothing queued).

    `run(p) -> Processed` generates it on the worker (default: process_images;
    the tabs pass scripts.run_with_scripts with their script arguments).
    """
    from modules.processing import process_images

    run = run or process_images
    try:
        p = make_processing()
        job = shared.queue.submit(lambda _job: run(p), label=label)
    except (ValueError, TypeError) as exc:
        gr.Warning(str(exc))
        yield gr.skip(), "", gr.skip(), error_html(str(exc)), gr.skip(), gr.skip()
        return

    _remember_job(request, job.id)
    try:
        yield gr.update(value=None, visible=True), progress_html(job, shared.queue.position(job.id)), \
            gr.update(visible=False), "", gr.skip(), gr.skip()
        shown_preview = 0
        while not job.wait(POLL_SECONDS):
            progress = job.progress
            preview = gr.skip()
            if progress.preview is not None and progress.preview_id != shown_preview:
                shown_preview = progress.preview_id
                preview = progress.preview
            yield preview, progress_html(job, shared.queue.position(job.id)), gr.skip(), gr.skip(), gr.skip(), \
                gr.skip()
    finally:
        _remember_job(request, None)
    yield from _finish(job)
