"""The img2img tab and its sub-tabs (A1111's): img2img, Sketch (colours drawn over the image become the init
image), Inpaint (draw the mask on the image), Inpaint sketch (the coloured strokes are both the new colours and
the mask), Inpaint upload (image + mask file) and Batch (a server folder, modules/img2img_batch.py).

Same shape as the txt2img tab (prompt row, parameters left, results right)
and the same job following (modules/ui/generation.py). The mask drawn in
an editor is the union of its brush layers' opaque pixels.
"""
from __future__ import annotations

import inspect

import gradio as gr
import numpy as np
from PIL import Image

from modules import img2img_batch, jobs, scripts, shared
from modules.ui import generation, scripts_ui, styles_ui
from modules.ui.extra_networks_ui import ExtraNetworksUI
from modules.ui.styles_ui import StylesUI
from modules.ui.token_counter import TokenCounter
from modules.ui.txt2img import _default, interrupt, reuse_seed, select_image, skip

SUB_TABS = ("img2img", "sketch", "inpaint", "inpaint_sketch", "inpaint_upload", "batch")
SKETCH_COLOURS = ["#ffffff", "#000000", "#e53935", "#fb8c00", "#fdd835", "#43a047", "#1e88e5", "#8e24aa"]
RESIZE_MODES = ["Just resize", "Crop and resize", "Resize and fill", "Just resize (latent upscale)"]
MASK_MODES = ["Inpaint masked", "Inpaint not masked"]
MASKED_CONTENT = ["fill", "original", "latent noise", "latent nothing"]
INPAINT_AREAS = ["Whole picture", "Only masked"]


class Img2ImgTab:
    def __init__(self):
        from modules.samplers import SAMPLERS, SCHEDULES

        sampler_names = [s.name for s in SAMPLERS]
        schedule_labels = [s.label for s in SCHEDULES]
        family = shared.models.current_family()
        size = family.native_size if family is not None else 512

        with gr.Row(elem_id="img2img_toprow"):
            with gr.Column(scale=6):
                self.prompt = gr.Textbox(label="Prompt", elem_id="img2img_prompt", lines=3,
                                         placeholder="Prompt (Ctrl+Enter to generate)")
                self.token_counter = TokenCounter("img2img_token_counter")
                self.negative_prompt = gr.Textbox(label="Negative prompt", elem_id="img2img_neg_prompt", lines=2)
                self.negative_token_counter = TokenCounter("img2img_negative_token_counter", negative=True)
            with gr.Column(scale=1, min_width=240, elem_id="img2img_actions"):
                self.generate = gr.Button("Generate", variant="primary", elem_id="img2img_generate",
                                          elem_classes=["easel-generate"])
                with gr.Row():
                    self.interrupt = gr.Button("Interrupt", elem_id="img2img_interrupt", min_width=60)
                    self.skip = gr.Button("Skip", elem_id="img2img_skip", min_width=60)
                with gr.Row():
                    # A1111's ↙️: fill the fields from generation parameters pasted into the prompt box
                    self.paste = gr.Button("↙️", elem_id="img2img_paste", min_width=40, elem_classes=["easel-tool"])
                self.style_tools = StylesUI("img2img")
                self.styles = self.style_tools.dropdown     # sent with Generate, applied to the job's prompts
        self.extra_networks = ExtraNetworksUI("img2img")

        self.mode = gr.State("img2img")
        with gr.Row(equal_height=False):
            with gr.Column(scale=5, elem_id="img2img_settings"):
                with gr.Tabs(elem_id="mode_img2img") as self.mode_tabs:
                    with gr.Tab("img2img", id="img2img", elem_id="img2img_img2img_tab") as tab_plain:
                        self.init_image = gr.Image(label="Image for img2img", elem_id="img2img_image", type="pil",
                                                   image_mode="RGBA", sources=["upload", "clipboard"], height=420)
                    with gr.Tab("Sketch", id="sketch", elem_id="img2img_img2img_sketch_tab") as tab_sketch:
                        # the composited drawing (image + coloured strokes) is the init image
                        self.sketch_color = gr.ImageEditor(
                            label="Image for img2img", elem_id="img2img_sketch", type="pil", image_mode="RGBA",
                            sources=["upload", "clipboard"], height=420,
                            brush=gr.Brush(colors=SKETCH_COLOURS, default_color="#e53935", color_mode="defaults"))
                    with gr.Tab("Inpaint", id="inpaint", elem_id="img2img_inpaint_tab") as tab_inpaint:
                        self.sketch = gr.ImageEditor(label="Image for inpainting with mask", elem_id="img2maskimg",
                                                     type="pil", image_mode="RGBA", sources=["upload", "clipboard"],
                                                     brush=gr.Brush(colors=["#ffffff"], color_mode="fixed"),
                                                     height=420)
                    with gr.Tab("Inpaint sketch", id="inpaint_sketch", elem_id="img2img_inpaint_sketch_tab") \
                            as tab_inpaint_sketch:
                        # the strokes are the new colours and, where drawn, the mask
                        self.inpaint_color_sketch = gr.ImageEditor(
                            label="Color sketch inpainting", elem_id="inpaint_sketch", type="pil",
                            image_mode="RGBA", sources=["upload", "clipboard"], height=420,
                            brush=gr.Brush(colors=SKETCH_COLOURS, default_color="#e53935", color_mode="defaults"))
                        self.mask_alpha = gr.Slider(0, 100, value=0, step=1, label="Mask transparency",
                                                    elem_id="img2img_mask_alpha")
                    with gr.Tab("Inpaint upload", id="inpaint_upload", elem_id="img2img_inpaint_upload_tab") \
                            as tab_upload:
                        self.upload_image = gr.Image(label="Image", elem_id="img_inpaint_base", type="pil",
                                                     image_mode="RGBA", sources=["upload", "clipboard"], height=300)
                        self.upload_mask = gr.Image(label="Mask (white = repaint)", elem_id="img_inpaint_mask",
                                                    type="pil", image_mode="RGBA", sources=["upload", "clipboard"],
                                                    height=300)
                    with gr.Tab("Batch", id="batch", elem_id="img2img_batch_tab") as tab_batch:
                        gr.HTML("<p>Process every image in a folder on the server with the settings below. "
                                "Outputs keep the input file names. Add a mask folder (masks named like the "
                                "images) for inpaint batch. Refused when the server listens beyond 127.0.0.1 "
                                "unless started with --enable-insecure-extension-access.</p>",
                                elem_id="img2img_batch_info")
                        self.batch_input_dir = gr.Textbox(label="Input directory", elem_id="img2img_batch_input_dir")
                        self.batch_output_dir = gr.Textbox(
                            label="Output directory", elem_id="img2img_batch_output_dir",
                            placeholder="Leave empty to save in the usual img2img outputs folder")
                        self.batch_mask_dir = gr.Textbox(
                            label="Inpaint batch mask directory (required for inpaint batch processing only)",
                            elem_id="img2img_batch_inpaint_mask_dir")
                tabs = ((tab_plain, "img2img"), (tab_sketch, "sketch"), (tab_inpaint, "inpaint"),
                        (tab_inpaint_sketch, "inpaint_sketch"), (tab_upload, "inpaint_upload"), (tab_batch, "batch"))
                for tab, mode in tabs:
                    tab.select(lambda m=mode: m, outputs=[self.mode], show_progress="hidden", concurrency_limit=None)

                self.resize_mode = gr.Radio(RESIZE_MODES, value=RESIZE_MODES[0], type="index", label="Resize mode",
                                            elem_id="resize_mode")
                with gr.Accordion("Inpainting", open=False, elem_id="img2img_inpaint_options"):
                    self.mask_blur = gr.Slider(0, 64, value=4, step=1, label="Mask blur", elem_id="img2img_mask_blur")
                    self.mask_mode = gr.Radio(MASK_MODES, value=MASK_MODES[0], type="index", label="Mask mode",
                                              elem_id="img2img_mask_mode")
                    self.inpainting_fill = gr.Radio(MASKED_CONTENT, value="original", type="index",
                                                    label="Masked content", elem_id="img2img_inpainting_fill")
                    self.inpaint_area = gr.Radio(INPAINT_AREAS, value=INPAINT_AREAS[0], type="index",
                                                 label="Inpaint area", elem_id="img2img_inpaint_full_res")
                    self.padding = gr.Slider(0, 256, value=32, step=4, label="Only masked padding, pixels",
                                             elem_id="img2img_inpaint_full_res_padding")
                with gr.Row():
                    self.sampler = gr.Dropdown(label="Sampling method", elem_id="img2img_sampling",
                                               choices=sampler_names, value=_default(sampler_names, "DPM++ 2M"))
                    self.scheduler = gr.Dropdown(label="Schedule type", elem_id="img2img_scheduler",
                                                 choices=schedule_labels, value=_default(schedule_labels, "Automatic"))
                self.steps = gr.Slider(1, 150, value=20, step=1, label="Sampling steps", elem_id="img2img_steps")
                with gr.Row():
                    with gr.Column(scale=3):
                        self.width = gr.Slider(64, 2048, value=size, step=8, label="Width", elem_id="img2img_width")
                        self.height = gr.Slider(64, 2048, value=size, step=8, label="Height",
                                                elem_id="img2img_height")
                    with gr.Column(scale=2, min_width=160):
                        self.batch_count = gr.Slider(1, 100, value=1, step=1, label="Batch count",
                                                     elem_id="img2img_batch_count")
                        self.batch_size = gr.Slider(1, 8, value=1, step=1, label="Batch size",
                                                    elem_id="img2img_batch_size")
                self.cfg_scale = gr.Slider(1, 30, value=7, step=0.5, label="CFG Scale", elem_id="img2img_cfg_scale")
                self.denoising_strength = gr.Slider(0, 1, value=0.75, step=0.01, label="Denoising strength",
                                                    elem_id="img2img_denoising_strength")
                with gr.Row(equal_height=True):
                    self.seed = gr.Number(label="Seed", value=-1, precision=0, elem_id="img2img_seed", scale=4)
                    self.random_seed = gr.Button("🎲", elem_id="img2img_random_seed", scale=0, min_width=40,
                                                 elem_classes=["easel-tool"])
                    self.reuse_seed = gr.Button("♻️", elem_id="img2img_reuse_seed", scale=0, min_width=40,
                                                elem_classes=["easel-tool"])
                # extension scripts: always-on sections and the "Script" dropdown (flat args, A1111 layout)
                self.script_inputs = scripts_ui.create_script_components(scripts.scripts_img2img)
            with gr.Column(scale=6, elem_id="img2img_results"):
                self.progress = gr.HTML("", elem_id="img2img_progress")
                self.preview = gr.Image(label="Preview", elem_id="img2img_preview", format="png",
                                        interactive=False, visible=False, height=512)
                self.gallery = gr.Gallery(label="Output", elem_id="img2img_gallery", format="png", columns=4,
                                          height=512, object_fit="contain", preview=True, interactive=False)
                self.info = gr.HTML("", elem_id="img2img_info")
        self.infotexts = gr.State([])
        self.selected = gr.State(0)
        self._wire()

    def _wire(self) -> None:
        from modules.ui import paste

        params = [self.mode, self.init_image, self.sketch, self.upload_image, self.upload_mask, self.prompt,
                  self.negative_prompt, self.sampler, self.scheduler, self.steps, self.cfg_scale, self.width,
                  self.height, self.batch_count, self.batch_size, self.seed, self.denoising_strength,
                  self.resize_mode, self.mask_blur, self.mask_mode, self.inpainting_fill, self.inpaint_area,
                  self.padding, self.sketch_color, self.inpaint_color_sketch, self.mask_alpha,
                  self.batch_input_dir, self.batch_output_dir, self.batch_mask_dir]
        outputs = [self.preview, self.progress, self.gallery, self.info, self.infotexts, self.selected]
        fixed = params + [self.styles]
        if len(fixed) != IMG2IMG_PARAMS:   # the scripts' arguments are sliced off after IMG2IMG_PARAMS values
            raise RuntimeError(f"img2img Generate sends {len(fixed)} fixed values; IMG2IMG_PARAMS is {IMG2IMG_PARAMS}")
        self.generate.click(generate_with_scripts, inputs=fixed + self.script_inputs, outputs=outputs,
                            concurrency_limit=None, show_progress="hidden")
        paste.bind_paste_button(self.paste, self, paste.IMG2IMG_FIELDS, self.prompt, runner=scripts.scripts_img2img)
        self.token_counter.wire(self.prompt, self.steps)
        self.negative_token_counter.wire(self.negative_prompt, self.steps)
        self.style_tools.wire(self.prompt, self.negative_prompt)
        self.extra_networks.wire(self.prompt)
        self.interrupt.click(interrupt, show_progress="hidden", concurrency_limit=None)
        self.skip.click(skip, show_progress="hidden", concurrency_limit=None)
        self.gallery.select(select_image, inputs=[self.infotexts], outputs=[self.info, self.selected],
                            show_progress="hidden")
        self.random_seed.click(lambda: -1, outputs=[self.seed], show_progress="hidden", concurrency_limit=None)
        self.reuse_seed.click(reuse_seed, inputs=[self.infotexts, self.selected, self.seed], outputs=[self.seed],
                              show_progress="hidden", concurrency_limit=None)


def editor_image_and_mask(value) -> tuple[Image.Image | None, Image.Image | None]:
    """gr.ImageEditor value -> (background image, L mask of everything painted on its layers) ."""
    if not value:
        return None, None
    background = value.get("background")
    if background is None:
        return None, None
    mask = Image.new("L", background.size, 0)
    for layer in value.get("layers") or []:
        if layer is None:
            continue
        alpha = layer.convert("RGBA").getchannel("A")
        if alpha.size != mask.size:
            alpha = alpha.resize(mask.size, Image.NEAREST)
        mask = Image.fromarray(np.maximum(np.asarray(mask), np.asarray(alpha)))
    return background, (mask if mask.getbbox() else None)


def editor_composite(value) -> Image.Image | None:
    """gr.ImageEditor value -> what the user sees: the background with every brush layer drawn over it."""
    if not value:
        return None
    background = value.get("background")
    if background is None:
        return value.get("composite")
    picture = background.convert("RGBA")
    for layer in value.get("layers") or []:
        if layer is None:
            continue
        layer = layer.convert("RGBA")
        if layer.size != picture.size:
            layer = layer.resize(picture.size, Image.NEAREST)
        picture = Image.alpha_composite(picture, layer)
    return picture


def inpaint_sketch_image_and_mask(value, mask_alpha) -> tuple[Image.Image | None, Image.Image | None]:
    """Inpaint sketch: (init image = the strokes blended over the picture, mask = where strokes are).

    "Mask transparency" (0-100, A1111's) lets that much of the original show
    through the strokes in the init image; the mask itself stays whole.
    """
    background, mask = editor_image_and_mask(value)
    if background is None or mask is None:
        return background, mask
    drawn = editor_composite(value)
    opacity = max(0.0, min(100.0, float(mask_alpha or 0))) / 100.0
    weight = mask.point(lambda v: round(v * (1.0 - opacity)))
    return Image.composite(drawn, background.convert("RGBA"), weight), mask


def build_processing(mode, init_image, sketch, upload_image, upload_mask, prompt, negative_prompt, sampler_name,
                     scheduler, steps, cfg_scale, width, height, batch_count, batch_size, seed, denoising_strength,
                     resize_mode, mask_blur, mask_mode, inpainting_fill, inpaint_area, padding, sketch_color=None,
                     inpaint_color_sketch=None, mask_alpha=0):
    """The page's values -> StableDiffusionProcessingImg2Img (ValueError naming what is missing)."""
    from modules.processing import StableDiffusionProcessingImg2Img

    mask = None
    if mode == "inpaint":
        image, mask = editor_image_and_mask(sketch)
        if image is not None and mask is None:
            raise ValueError("mask: paint over the area to repaint first")
    elif mode == "inpaint_sketch":
        image, mask = inpaint_sketch_image_and_mask(inpaint_color_sketch, mask_alpha)
        if image is not None and mask is None:
            raise ValueError("mask: draw coloured strokes over the area to repaint first")
    elif mode == "inpaint_upload":
        image, mask = upload_image, upload_mask
        if image is not None and mask is None:
            raise ValueError("mask: upload a mask image (white = repaint)")
    elif mode == "sketch":
        image = editor_composite(sketch_color)
    else:
        image = init_image
    if image is None:
        raise ValueError("init_images: upload an image first")
    return StableDiffusionProcessingImg2Img(
        init_images=[image], mask=mask, prompt=prompt or "", negative_prompt=negative_prompt or "",
        seed=int(seed if seed is not None else -1), sampler_name=sampler_name, scheduler=scheduler,
        steps=int(steps), cfg_scale=float(cfg_scale), width=int(width), height=int(height),
        batch_size=int(batch_size), n_iter=int(batch_count), denoising_strength=float(denoising_strength),
        resize_mode=int(resize_mode or 0), mask_blur=int(mask_blur), inpainting_mask_invert=int(mask_mode or 0),
        inpainting_fill=int(inpainting_fill or 0), inpaint_full_res=bool(inpaint_area),
        inpaint_full_res_padding=int(padding),
    )


IMG2IMG_PARAMS = 30   # values of the fixed controls (generate's arguments up to styles) before the script arguments


def generate_with_scripts(request: gr.Request, *values):
    """Generate's handler: the fixed controls, then the scripts' flat argument list."""
    yield from generate(*values[:IMG2IMG_PARAMS], request=request, script_args=list(values[IMG2IMG_PARAMS:]))


def generate(mode, init_image, sketch, upload_image, upload_mask, prompt, negative_prompt, sampler_name, scheduler,
             steps, cfg_scale, width, height, batch_count, batch_size, seed, denoising_strength, resize_mode,
             mask_blur, mask_mode, inpainting_fill, inpaint_area, padding, sketch_color=None,
             inpaint_color_sketch=None, mask_alpha=0, batch_input_dir="", batch_output_dir="", batch_mask_dir="",
             styles=None, request: gr.Request = None, script_args=None):
    """Submit an img2img job (or, on the Batch sub-tab, one job for a folder) and stream its progress and result."""
    values = (mode, init_image, sketch, upload_image, upload_mask, prompt, negative_prompt, sampler_name, scheduler,
              steps, cfg_scale, width, height, batch_count, batch_size, seed, denoising_strength, resize_mode,
              mask_blur, mask_mode, inpainting_fill, inpaint_area, padding, sketch_color, inpaint_color_sketch,
              mask_alpha)

    def run(p):
        return scripts.run_with_scripts(p, script_args, scripts.scripts_img2img)

    if mode == "batch":
        yield from generation.run_processing(
            lambda: batch_plan(values, styles, batch_input_dir, batch_output_dir, batch_mask_dir), "img2img batch",
            request, run=lambda plan: img2img_batch.run(plan, run, jobs.current_state()))
        return
    yield from generation.run_processing(lambda: styles_ui.apply_to_processing(build_processing(*values), styles),
                                         "img2img", request, run=run)


def batch_plan(values, styles, input_dir, output_dir, mask_dir) -> img2img_batch.BatchPlan:
    """The Batch sub-tab: folders checked now (errors shown before anything is queued); each picture is built
    with the tab's settings as plain img2img, or as inpaint upload when a mask folder is given."""
    names = list(inspect.signature(build_processing).parameters)[:len(values)]
    settings = dict(zip(names, values))

    def make_processing(image, mask):
        fields = dict(settings, mode="inpaint_upload" if mask is not None else "img2img", init_image=image,
                      upload_image=image, upload_mask=mask)
        return styles_ui.apply_to_processing(build_processing(**fields), styles)

    return img2img_batch.plan(input_dir, output_dir, mask_dir, make_processing, shared.cmd_opts)
