"""The Extras tab: upscale finished images (one, several uploads, or a server folder), A1111's layout and ids.

The work is modules/postprocessing.py, run as a job on the shared queue (it
waits for a running generation). Results are saved to outdir_extras_samples
(outputs/extras-images/) or, for Batch from Directory, to its output folder,
and shown in the gallery with their infotext.
"""
from __future__ import annotations

import html
from pathlib import Path

import gradio as gr

from modules import postprocessing, shared, upscalers
from modules.ui.progress import progress_html
from modules.ui.txt2img import POLL_SECONDS, error_html, infotext_html

SOURCES = ("Single Image", "Batch Process", "Batch from Directory")


class ExtrasTab:
    def __init__(self):
        choices = upscalers.names(include_none=True)
        with gr.Row(equal_height=False):
            with gr.Column(variant="compact"):
                self.source = gr.State(SOURCES[0])
                with gr.Tabs(elem_id="mode_extras") as self.source_tabs:
                    with gr.Tab(SOURCES[0], id="single_image", elem_id="extras_single_tab") as single:
                        self.image = gr.Image(label="Source", elem_id="extras_image", type="filepath", format="png",
                                              sources=["upload", "clipboard"], height=360)
                    with gr.Tab(SOURCES[1], id="batch_process", elem_id="extras_batch_process_tab") as batch:
                        self.image_batch = gr.File(label="Batch Process", file_count="multiple",
                                                   file_types=["image"], elem_id="extras_image_batch")
                    with gr.Tab(SOURCES[2], id="batch_from_directory", elem_id="extras_batch_directory_tab") as folder:
                        self.input_dir = gr.Textbox(label="Input directory", elem_id="extras_batch_input_dir",
                                                    placeholder="A folder on the server holding the images")
                        self.output_dir = gr.Textbox(label="Output directory", elem_id="extras_batch_output_dir",
                                                     placeholder="Leave blank to save images to the default path.")
                        self.show_results = gr.Checkbox(label="Show result images", value=True,
                                                        elem_id="extras_show_extras_results")
                self.generate = gr.Button("Generate", variant="primary", elem_id="extras_generate")

                self.resize_mode = gr.State(0)
                with gr.Tabs(elem_id="extras_resize_mode"):
                    with gr.Tab("Scale by", elem_id="extras_scale_by_tab") as scale_by:
                        self.upscaling_resize = gr.Slider(1.0, postprocessing.MAX_SCALE, value=2.0, step=0.05,
                                                          label="Resize", elem_id="extras_upscaling_resize")
                    with gr.Tab("Scale to", elem_id="extras_scale_to_tab") as scale_to:
                        with gr.Row():
                            self.upscaling_resize_w = gr.Slider(64, 8192, value=512, step=8, label="Width",
                                                                elem_id="extras_upscaling_resize_w")
                            self.upscaling_resize_h = gr.Slider(64, 8192, value=512, step=8, label="Height",
                                                                elem_id="extras_upscaling_resize_h")
                        self.upscaling_crop = gr.Checkbox(label="Crop to fit", value=True,
                                                          elem_id="extras_upscaling_crop")
                with gr.Row():
                    self.upscaler_1 = gr.Dropdown(label="Upscaler 1", choices=choices, value=upscalers.NONE,
                                                  elem_id="extras_upscaler_1")
                    self.upscaler_2 = gr.Dropdown(label="Upscaler 2", choices=choices, value=upscalers.NONE,
                                                  elem_id="extras_upscaler_2")
                    self.upscaler_2_visibility = gr.Slider(0.0, 1.0, value=0.0, step=0.001,
                                                           label="Upscaler 2 visibility",
                                                           elem_id="extras_upscaler_2_visibility")
                unusable = upscalers.unavailable()
                if unusable:
                    gr.HTML(_unusable_html(unusable), elem_id="extras_unusable_upscalers")
            with gr.Column():
                self.progress = gr.HTML("", elem_id="extras_progress")
                self.gallery = gr.Gallery(label="Result", elem_id="extras_gallery", format="png", columns=4,
                                          height=480, object_fit="contain", preview=True)
                self.info = gr.HTML("", elem_id="html_info_extras")

        for tab, name in ((single, SOURCES[0]), (batch, SOURCES[1]), (folder, SOURCES[2])):
            tab.select(lambda name=name: name, outputs=[self.source], show_progress="hidden")
        scale_by.select(lambda: 0, outputs=[self.resize_mode], show_progress="hidden")
        scale_to.select(lambda: 1, outputs=[self.resize_mode], show_progress="hidden")
        inputs = [self.source, self.image, self.image_batch, self.input_dir, self.output_dir, self.show_results,
                  self.resize_mode, self.upscaling_resize, self.upscaling_resize_w, self.upscaling_resize_h,
                  self.upscaling_crop, self.upscaler_1, self.upscaler_2, self.upscaler_2_visibility]
        self.generate.click(run, inputs=inputs, outputs=[self.progress, self.gallery, self.info],
                            show_progress="hidden", concurrency_limit=None)


def _unusable_html(unusable: dict[str, str]) -> str:
    rows = "<br>".join(f"{html.escape(name)}: {html.escape(reason)}" for name, reason in unusable.items())
    return f'<div class="easel-note">Model upscalers that cannot be used:<br>{rows}</div>'


def _open(path: str):
    from PIL import Image

    with Image.open(path) as image:
        image.load()
        return image.copy()


def collect(source, image, image_batch, input_dir, output_dir):
    """(items, folder to save in) for the selected source; ValueError naming what is missing."""
    if source == SOURCES[2]:
        return postprocessing.directory_items(input_dir, output_dir, shared.cmd_opts)
    if source == SOURCES[1]:
        files = [getattr(f, "name", f) for f in (image_batch or [])]
        if not files:
            raise ValueError("Batch Process: upload one or more images first")
        items = []
        for path in files:
            try:
                items.append((_open(path), Path(path).name))
            except Exception:    # PIL raises several types for files that are not images
                raise ValueError(f"Batch Process: {Path(path).name} is not an image") from None
        return items, postprocessing.output_dir()
    if not image:
        raise ValueError("Single Image: upload an image first")
    return [(_open(image), None)], postprocessing.output_dir()


def run(source, image, image_batch, input_dir, output_dir, show_results, resize_mode, upscaling_resize,
        upscaling_resize_w, upscaling_resize_h, upscaling_crop, upscaler_1, upscaler_2, upscaler_2_visibility):
    """Queue the extras job, show its progress, then the results (or the error)."""
    settings = postprocessing.ExtrasSettings(
        resize_mode=int(resize_mode), upscaling_resize=float(upscaling_resize),
        upscaling_resize_w=int(upscaling_resize_w), upscaling_resize_h=int(upscaling_resize_h),
        upscaling_crop=bool(upscaling_crop), upscaler_1=upscaler_1 or upscalers.NONE,
        upscaler_2=upscaler_2 or upscalers.NONE, extras_upscaler_2_visibility=float(upscaler_2_visibility or 0))
    try:
        items, save_dir = collect(source, image, image_batch, input_dir, output_dir)
        job = postprocessing.submit(items, settings, save_dir=save_dir)
    except ValueError as exc:
        gr.Warning(str(exc))
        yield "", gr.skip(), error_html(str(exc))
        return
    while not job.wait(POLL_SECONDS):
        yield progress_html(job, shared.queue.position(job.id)), gr.skip(), gr.skip()
    if job.status == "failed":
        message = job.error or "extras failed"
        gr.Warning(message)
        yield "", gr.skip(), error_html(message)
        return
    results = job.result or []
    note = '<div class="easel-note">Interrupted</div>' if job.status == "interrupted" else ""
    if not results:
        yield "", gr.skip(), note or '<div class="easel-note">No image was made</div>'
        return
    saved = f'<div class="easel-note">Saved to {html.escape(str(save_dir))}</div>'
    if source == SOURCES[2] and not show_results:
        yield "", gr.update(value=None), note + saved
        return
    text = results[-1].infotext or results[-1].keys
    yield "", gr.update(value=[r.image for r in results], selected_index=0), note + infotext_html(text) + saved
