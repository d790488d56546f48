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
from modules.ui import scripts_ui, styles_ui
from modules.ui.extra_networks_ui import ExtraNetworksUI
from modules.ui.styles_ui import StylesUI
from modules.ui.token_counter import TokenCounter

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
                self.token_counter = TokenCounter("txt2img_token_counter")
                self.negative_prompt = gr.Textbox(label="Negative prompt", elem_id="txt2img_neg_prompt", lines=2)
                self.negative_token_counter = TokenCounter("txt2img_negative_token_counter", negative=True)
            with gr.Column(scale=1, min_width=240, elem_id="txt2img_actions"):
                self.generate = gr.Button("Generate", variant="primary", elem_id="txt2img_generate",
                                          elem_classes=["easel-generate"])
                with gr.Row():
                    self.interrupt = gr.Button("Interrupt", elem_id="txt2img_interrupt", min_width=60)
                    self.skip = gr.Button("Skip", elem_id="txt2img_skip", min_width=60)
                with gr.Row():
                    # A1111's ↙️: fill the fields from generation parameters pasted into the prompt box
                    self.paste = gr.Button("↙️", elem_id="txt2img_paste", min_width=40, elem_classes=["easel-tool"])
                self.style_tools = StylesUI("txt2img")
                self.styles = self.style_tools.dropdown     # sent with Generate (PARAM_NAMES)
        self.extra_networks = ExtraNetworksUI("txt2img")

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
                self._variation_seed_controls()
                self._hires_controls(sampler_names)
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

    def _variation_seed_controls(self) -> None:
        """A1111's "Extra" seed options: strength 0 = off."""
        with gr.Accordion("Variation seed", open=False, elem_id="txt2img_subseed_show"):
            with gr.Row():
                self.subseed = gr.Number(label="Variation seed", value=-1, precision=0, elem_id="txt2img_subseed")
                self.subseed_strength = gr.Slider(0, 1, value=0, step=0.01, label="Variation strength",
                                                  elem_id="txt2img_subseed_strength")
            with gr.Row():
                self.seed_resize_from_w = gr.Slider(0, 2048, value=0, step=8, label="Resize seed from width",
                                                    elem_id="txt2img_seed_resize_from_w")
                self.seed_resize_from_h = gr.Slider(0, 2048, value=0, step=8, label="Resize seed from height",
                                                    elem_id="txt2img_seed_resize_from_h")

    def _hires_controls(self, sampler_names: list[str]) -> None:
        """The "Hires. fix" accordion: opening it turns hires fix on (A1111 1.6+), the checkbox shows it."""
        from modules import hires

        with gr.Accordion("Hires. fix", open=False, elem_id="txt2img_hr") as self.hr_accordion:
            self.enable_hr = gr.Checkbox(label="Enable hires. fix", value=False, elem_id="txt2img_hr-checkbox")
            with gr.Row():
                self.hr_upscaler = gr.Dropdown(label="Upscaler", choices=hires.upscaler_names(),
                                               value=hires.DEFAULT_UPSCALER, elem_id="txt2img_hr_upscaler")
                self.hr_second_pass_steps = gr.Slider(0, 150, value=0, step=1, label="Hires steps (0: same)",
                                                      elem_id="txt2img_hires_steps")
                self.denoising_strength = gr.Slider(0, 1, value=hires.DEFAULT_DENOISING, step=0.01,
                                                    label="Denoising strength", elem_id="txt2img_denoising_strength")
            with gr.Row():
                self.hr_scale = gr.Slider(1, hires.MAX_HR_SCALE, value=2, step=0.05, label="Upscale by",
                                          elem_id="txt2img_hr_scale")
                self.hr_resize_x = gr.Slider(0, 2048, value=0, step=8, label="Resize width to (0: use scale)",
                                             elem_id="txt2img_hr_resize_x")
                self.hr_resize_y = gr.Slider(0, 2048, value=0, step=8, label="Resize height to (0: use scale)",
                                             elem_id="txt2img_hr_resize_y")
            self.hr_sampler_name = gr.Dropdown(label="Hires sampling method", value=hires.SAME_SAMPLER,
                                               choices=[hires.SAME_SAMPLER, *sampler_names], elem_id="hr_sampler")
            self.hr_prompt = gr.Textbox(label="Hires prompt (empty: same as the prompt)", lines=2,
                                        elem_id="hires_prompt")
            self.hr_negative_prompt = gr.Textbox(label="Hires negative prompt (empty: same)", lines=2,
                                                 elem_id="hires_neg_prompt")
        self.hr_accordion.expand(lambda: True, outputs=[self.enable_hr], show_progress="hidden",
                                 concurrency_limit=None)
        self.hr_accordion.collapse(lambda: False, outputs=[self.enable_hr], show_progress="hidden",
                                   concurrency_limit=None)

    def _wire(self) -> None:
        from modules.ui import paste

        params = [getattr(self, name) for name in PARAM_NAMES]
        outputs = [self.preview, self.progress, self.gallery, self.info, self.infotexts, self.selected]
        self.generate.click(generate_with_scripts, inputs=params + self.script_inputs, outputs=outputs,
                            concurrency_limit=None, show_progress="hidden")
        self.token_counter.wire(self.prompt, self.steps)
        self.negative_token_counter.wire(self.negative_prompt, self.steps)
        self.style_tools.wire(self.prompt, self.negative_prompt)
        self.extra_networks.wire(self.prompt)
        paste.bind_paste_button(self.paste, self, paste.TXT2IMG_FIELDS, self.prompt, extra_outputs=[self.hr_accordion],
                                extra=lambda values: [gr.update(open=values["enable_hr"]) if "enable_hr" in values
                                                     else gr.skip()], runner=scripts.scripts_txt2img)
        self.interrupt.click(interrupt, show_progress="hidden", concurrency_limit=None)
        self.skip.click(skip, show_progress="hidden", concurrency_limit=None)
        self.gallery.select(select_image, inputs=[self.infotexts], outputs=[self.info, self.selected],
                            show_progress="hidden")
        self.random_seed.click(lambda: -1, outputs=[self.seed], show_progress="hidden", concurrency_limit=None)
        self.reuse_seed.click(reuse_seed, inputs=[self.infotexts, self.selected, self.seed], outputs=[self.seed],
                              show_progress="hidden", concurrency_limit=None)


def _default(choices: list[str], preferred: str) -> str | None:
    return preferred if preferred in choices else (choices[0] if choices else None)


# Tab attributes whose values Generate sends, in order, before the scripts' flat argument list.
PARAM_NAMES = ("prompt", "negative_prompt", "sampler", "scheduler", "steps", "cfg_scale", "width", "height",
               "batch_count", "batch_size", "seed", "subseed", "subseed_strength", "seed_resize_from_w",
               "seed_resize_from_h", "enable_hr", "hr_scale", "hr_upscaler", "hr_second_pass_steps", "hr_resize_x",
               "hr_resize_y", "denoising_strength", "hr_sampler_name", "hr_prompt", "hr_negative_prompt", "styles")
GENERATE_PARAMS = len(PARAM_NAMES)   # values of the fixed controls before the script arguments


def generate_with_scripts(request: gr.Request, *values):
    """Generate's handler: the fixed controls, then the scripts' flat argument list."""
    fields = dict(zip(PARAM_NAMES, values[:GENERATE_PARAMS]))
    yield from generate(fields, request=request, script_args=list(values[GENERATE_PARAMS:]))


def _int_or(value, default: int) -> int:
    return int(value) if value is not None else default


def build_processing(values: dict):
    """The tab's values by attribute name (PARAM_NAMES; missing ones get the defaults) -> Processing object."""
    from modules import hires
    from modules.processing import StableDiffusionProcessingTxt2Img

    v = dict(values)
    enable_hr = bool(v.get("enable_hr", False))
    hr_sampler = v.get("hr_sampler_name") or hires.SAME_SAMPLER
    resize_w, resize_h = _int_or(v.get("seed_resize_from_w"), 0), _int_or(v.get("seed_resize_from_h"), 0)
    p = StableDiffusionProcessingTxt2Img(
        prompt=v.get("prompt") or "", negative_prompt=v.get("negative_prompt") or "",
        seed=_int_or(v.get("seed"), -1), subseed=_int_or(v.get("subseed"), -1),
        subseed_strength=float(v.get("subseed_strength") or 0.0),
        # 0 in the boxes means "off"; Processing's off value is -1
        seed_resize_from_w=resize_w if resize_w > 0 else -1, seed_resize_from_h=resize_h if resize_h > 0 else -1,
        sampler_name=v.get("sampler"), scheduler=v.get("scheduler"), steps=int(v.get("steps", 20)),
        cfg_scale=float(v.get("cfg_scale", 7)), width=int(v.get("width", 512)), height=int(v.get("height", 512)),
        batch_size=int(v.get("batch_size", 1)), n_iter=int(v.get("batch_count", 1)),
        enable_hr=enable_hr, hr_scale=float(v.get("hr_scale", 2.0)),
        hr_upscaler=v.get("hr_upscaler") or hires.DEFAULT_UPSCALER,
        hr_second_pass_steps=_int_or(v.get("hr_second_pass_steps"), 0),
        hr_resize_x=_int_or(v.get("hr_resize_x"), 0), hr_resize_y=_int_or(v.get("hr_resize_y"), 0),
        # txt2img reads denoising strength only for the hires pass (as A1111 does)
        denoising_strength=float(v.get("denoising_strength", hires.DEFAULT_DENOISING)) if enable_hr else None,
        hr_sampler_name=None if hr_sampler == hires.SAME_SAMPLER else hr_sampler,
        hr_prompt=v.get("hr_prompt") or "", hr_negative_prompt=v.get("hr_negative_prompt") or "",
    )
    return styles_ui.apply_to_processing(p, v.get("styles"))   # process_images merges them into the prompts


def generate(values: dict, request: gr.Request = None, script_args=None):
    """Submit a txt2img job and stream its previews, progress and result to the page."""
    from modules.ui import generation  # generation reuses this module's helpers

    yield from generation.run_processing(
        lambda: build_processing(values), "txt2img", request,
        run=lambda p: scripts.run_with_scripts(p, script_args, scripts.scripts_txt2img))


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
