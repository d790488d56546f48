"""The txt2img tab: prompt boxes, generation parameters, gallery, live preview.

Generate submits one job to the shared queue and then follows it: every
~0.15 s it yields the newest live preview (only when a new one exists) and
the progress bar, and at the end the gallery and the infotext. The page never
touches the model; Interrupt and Skip only flag the job.
"""
from __future__ import annotations

import html
import threading

import gradio as gr

from modules import scripts, shared
from modules.ui import scripts_ui
from modules.ui.progress import progress_html

POLL_SECONDS = 0.15

# session_hash -> id of the job that session's Generate is following, so that
# Interrupt/Skip stop this user's job and not somebody else's.
_session_jobs: dict[str, str] = {}
_session_lock = threading.Lock()


def _remember_job(request: gr.Request | None, job_id: str | None) -> None:
    key = getattr(request, "session_hash", None)
    if key is None:
        return
    with _session_lock:
        if job_id is None:
            _session_jobs.pop(key, None)
        else:
            _session_jobs[key] = job_id


def _session_job(request: gr.Request | None) -> str | None:
    with _session_lock:
        return _session_jobs.get(getattr(request, "session_hash", None))


def infotext_html(text: str | None) -> str:
    if not text:
        return ""
    return '<div class="easel-infotext">' + html.escape(text).replace("\n", "<br>") + "</div>"


def warnings_html(processed) -> str:
    """Problems that did not stop the job (a failing extension hook, an unknown LoRA...)."""
    warnings = getattr(processed, "warnings", None) or []
    if not warnings:
        return ""
    return '<div class="easel-note easel-warnings">' + "<br>".join(html.escape(w) for w in warnings) + "</div>"


def error_html(message: str) -> str:
    return f'<div class="easel-error">{html.escape(message)}</div>'


def seed_of(infotext: str | None) -> int | None:
    """The `Seed:` value of an infotext, or None when it has none."""
    if not infotext:
        return None
    from modules.infotext import parse_infotext

    value = parse_infotext(infotext).get("Seed")
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _with_infotext(image, text: str | None):
    """Attach the infotext as the PNG `parameters` chunk so a downloaded image keeps it."""
    if text and image.info.get("parameters") != text:
        image = image.copy()
        image.info["parameters"] = text
    return image


def gallery_items(processed) -> tuple[list, list[str]]:
    """(images with infotext attached, infotext per image) of a `Processed`."""
    images = list(processed.images or [])
    texts = list(processed.infotexts or [])
    per_image = [texts[i] if i < len(texts) else (texts[-1] if texts else processed.info) for i in range(len(images))]
    return [_with_infotext(im, t) for im, t in zip(images, per_image)], per_image


class Txt2ImgTab:
    def __init__(self):
        from modules.samplers import SAMPLERS, SCHEDULES

        sampler_names = [s.name for s in SAMPLERS]
        schedule_labels = [s.label for s in SCHEDULES]
        family = shared.models.current_family()
        size = family.native_size if family is not None else 512

        with gr.Row(elem_id="txt2img_toprow"):
            with gr.Column(scale=6):
                self.prompt = gr.Textbox(label="Prompt", elem_id="txt2img_prompt", lines=3,
                                         placeholder="Prompt (Ctrl+Enter to generate)")
                self.negative_prompt = gr.Textbox(label="Negative prompt", elem_id="txt2img_neg_prompt", lines=2)
            with gr.Column(scale=1, min_width=240, elem_id="txt2img_actions"):
                self.generate = gr.Button("Generate", variant="primary", elem_id="txt2img_generate",
                                          elem_classes=["easel-generate"])
                with gr.Row():
                    self.interrupt = gr.Button("Interrupt", elem_id="txt2img_interrupt", min_width=60)
                    self.skip = gr.Button("Skip", elem_id="txt2img_skip", min_width=60)

        with gr.Row(equal_height=False):
            with gr.Column(scale=5, elem_id="txt2img_settings"):
                with gr.Row():
                    self.sampler = gr.Dropdown(label="Sampling method", elem_id="txt2img_sampling",
                                               choices=sampler_names, value=_default(sampler_names, "DPM++ 2M"))
                    self.scheduler = gr.Dropdown(label="Schedule type", elem_id="txt2img_scheduler",
                                                 choices=schedule_labels, value=_default(schedule_labels, "Automatic"))
                self.steps = gr.Slider(1, 150, value=20, step=1, label="Sampling steps", elem_id="txt2img_steps")
                with gr.Row():
                    with gr.Column(scale=3):
                        self.width = gr.Slider(64, 2048, value=size, step=8, label="Width", elem_id="txt2img_width")
                        self.height = gr.Slider(64, 2048, value=size, step=8, label="Height",
                                                elem_id="txt2img_height")
                    with gr.Column(scale=2, min_width=160):
                        self.batch_count = gr.Slider(1, 100, value=1, step=1, label="Batch count",
                                                     elem_id="txt2img_batch_count")
                        self.batch_size = gr.Slider(1, 8, value=1, step=1, label="Batch size",
                                                    elem_id="txt2img_batch_size")
                self.cfg_scale = gr.Slider(1, 30, value=7, step=0.5, label="CFG Scale", elem_id="txt2img_cfg_scale")
                with gr.Row(equal_height=True):
                    self.seed = gr.Number(label="Seed", value=-1, precision=0, elem_id="txt2img_seed", scale=4)
                    self.random_seed = gr.Button("🎲", elem_id="txt2img_random_seed", scale=0, min_width=40,
                                                 elem_classes=["easel-tool"])
                    self.reuse_seed = gr.Button("♻️", elem_id="txt2img_reuse_seed", scale=0, min_width=40,
                                                elem_classes=["easel-tool"])
                # extension scripts: always-on sections and the "Script" dropdown (flat args, A1111 layout)
                self.script_inputs = scripts_ui.create_script_components(scripts.scripts_txt2img)
            with gr.Column(scale=6, elem_id="txt2img_results"):
                self.progress = gr.HTML("", elem_id="txt2img_progress")
                self.preview = gr.Image(label="Preview", elem_id="txt2img_preview", format="png",
                                        interactive=False, visible=False, height=512)
                self.gallery = gr.Gallery(label="Output", elem_id="txt2img_gallery", format="png", columns=4,
                                          height=512, object_fit="contain", preview=True, interactive=False)
                self.info = gr.HTML("", elem_id="txt2img_info")
        # Infotexts of the images in the gallery, and which one is selected (for ♻️ and the info box).
        self.infotexts = gr.State([])
        self.selected = gr.State(0)
        self._wire()

    def _wire(self) -> None:
        params = [self.prompt, self.negative_prompt, self.sampler, self.scheduler, self.steps, self.cfg_scale,
                  self.width, self.height, self.batch_count, self.batch_size, self.seed]
        outputs = [self.preview, self.progress, self.gallery, self.info, self.infotexts, self.selected]
        self.generate.click(generate_with_scripts, inputs=params + self.script_inputs, outputs=outputs,
                            concurrency_limit=None, show_progress="hidden")
        self.interrupt.click(interrupt, show_progress="hidden", concurrency_limit=None)
        self.skip.click(skip, show_progress="hidden", concurrency_limit=None)
        self.gallery.select(select_image, inputs=[self.infotexts], outputs=[self.info, self.selected],
                            show_progress="hidden")
        self.random_seed.click(lambda: -1, outputs=[self.seed], show_progress="hidden", concurrency_limit=None)
        self.reuse_seed.click(reuse_seed, inputs=[self.infotexts, self.selected, self.seed], outputs=[self.seed],
                              show_progress="hidden", concurrency_limit=None)


def _default(choices: list[str], preferred: str) -> str | None:
    return preferred if preferred in choices else (choices[0] if choices else None)


GENERATE_PARAMS = 11   # values of the fixed controls before the script arguments


def generate_with_scripts(request: gr.Request, *values):
    """Generate's handler: the fixed controls, then the scripts' flat argument list."""
    yield from generate(*values[:GENERATE_PARAMS], request=request, script_args=list(values[GENERATE_PARAMS:]))


def generate(prompt, negative_prompt, sampler_name, scheduler, steps, cfg_scale, width, height, batch_count,
             batch_size, seed, request: gr.Request = None, script_args=None):
    """Submit a txt2img job and stream its previews, progress and result to the page."""
    from modules.processing import StableDiffusionProcessingTxt2Img

    # outputs: preview, progress, gallery, info, infotexts, selected
    try:
        p = StableDiffusionProcessingTxt2Img(
            prompt=prompt or "", negative_prompt=negative_prompt or "", seed=int(seed if seed is not None else -1),
            sampler_name=sampler_name, scheduler=scheduler, steps=int(steps), cfg_scale=float(cfg_scale),
            width=int(width), height=int(height), batch_size=int(batch_size), n_iter=int(batch_count),
        )
        job = shared.queue.submit(lambda _job: scripts.run_with_scripts(p, script_args, scripts.scripts_txt2img),
                                  label="txt2img")
    except (ValueError, TypeError) as exc:  # bad parameters: say which, keep the page as it was
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


def _finish(job):
    """Last yield: gallery + infotext, or the error / interruption message."""
    hidden_preview = gr.update(value=None, visible=False)
    if job.status == "failed":
        message = job.error or "generation failed"
        gr.Warning(message)
        yield hidden_preview, "", gr.update(visible=True), error_html(message), gr.skip(), gr.skip()
        return
    images, texts = gallery_items(job.result) if job.result is not None else ([], [])
    note = ""
    if job.status == "interrupted":
        progress = job.progress
        unfinished = "" if images else ": no image was finished"
        note = (f'<div class="easel-note">Interrupted at step {progress.sampling_step}/{progress.sampling_steps}'
                f'{unfinished}</div>')
    elif job.status == "cancelled":
        note = '<div class="easel-note">Cancelled before it started</div>'
    if not images:  # keep the previous gallery and its infotexts
        yield hidden_preview, "", gr.update(visible=True), note, gr.skip(), gr.skip()
        return
    yield hidden_preview, "", gr.update(value=images, visible=True, selected_index=0), \
        note + warnings_html(job.result) + infotext_html(texts[0]), texts, 0


def interrupt(request: gr.Request = None):
    job_id = _session_job(request)
    if job_id is not None:
        shared.queue.interrupt(job_id)


def skip(request: gr.Request = None):
    job_id = _session_job(request)
    if job_id is not None:
        shared.queue.skip(job_id)


def select_image(infotexts, evt: gr.SelectData):
    index = evt.index if isinstance(evt.index, int) else 0
    text = infotexts[index] if 0 <= index < len(infotexts) else None
    return infotext_html(text), index


def reuse_seed(infotexts, selected, current_seed):
    """♻️: the seed of the selected image (or the first), else keep the box as it is."""
    if not infotexts:
        return current_seed
    index = selected if isinstance(selected, int) and 0 <= selected < len(infotexts) else 0
    seed = seed_of(infotexts[index])
    return current_seed if seed is None else seed
