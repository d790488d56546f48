"""The img2img tab: img2img, Inpaint (draw the mask on the image) and Inpaint upload (image + mask file).

Same shape as the txt2img tab (prompt row, parameters left, results right)
and the same job following (modules/ui/generation.py). The mask drawn in
the editor is the union of its brush layers' opaque pixels.
"""
from __future__ import annotations

import gradio as gr
import numpy as np
from PIL import Image

from modules import scripts, shared
from modules.ui import generation, scripts_ui, styles_ui
from modules.ui.extra_networks_ui import ExtraNetworksUI
from modules.ui.styles_ui import StylesUI
from modules.ui.token_counter import TokenCounter
from modules.ui.txt2img import _default, interrupt, reuse_seed, select_image, skip

SUB_TABS = ("img2img", "inpaint", "inpaint_upload")
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
                    with gr.Tab("Inpaint", id="inpaint", elem_id="img2img_inpaint_tab") as tab_inpaint:
                        self.sketch = gr.ImageEditor(label="Image for inpainting with mask", elem_id="img2maskimg",
                                                     type="pil", image_mode="RGBA", sources=["upload", "clipboard"],
                                                     brush=gr.Brush(colors=["#ffffff"], color_mode="fixed"),
                                                     height=420)
                    with gr.Tab("Inpaint upload", id="inpaint_upload", elem_id="img2img_inpaint_upload_tab") \
                            as tab_upload:
                        self.upload_image = gr.Image(label="Image", elem_id="img_inpaint_base", type="pil",
                                                     image_mode="RGBA", sources=["upload", "clipboard"], height=300)
                        self.upload_mask = gr.Image(label="Mask (white = repaint)", elem_id="img_inpaint_mask",
                                                    type="pil", image_mode="RGBA", sources=["upload", "clipboard"],
                                                    height=300)
                for tab, mode in ((tab_plain, "img2img"), (tab_inpaint, "inpaint"), (tab_upload, "inpaint_upload")):
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
                  self.padding]
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


def build_processing(mode, init_image, sketch, upload_image, upload_mask, prompt, negative_prompt, sampler_name,
                     scheduler, steps, cfg_scale, width, height, batch_count, batch_size, seed, denoising_strength,
                     resize_mode, mask_blur, mask_mode, inpainting_fill, inpaint_area, padding):
    """The page's values -> StableDiffusionProcessingImg2Img (ValueError naming what is missing)."""
    from modules.processing import StableDiffusionProcessingImg2Img

    mask = None
    if mode == "inpaint":
        image, mask = editor_image_and_mask(sketch)
        if image is not None and mask is None:
            raise ValueError("mask: paint over the area to repaint first")
    elif mode == "inpaint_upload":
        image, mask = upload_image, upload_mask
        if image is not None and mask is None:
            raise ValueError("mask: upload a mask image (white = repaint)")
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


IMG2IMG_PARAMS = 24   # values of the fixed controls (generate's arguments up to styles) before the script arguments


def generate_with_scripts(request: gr.Request, *values):
    """Generate's handler: the fixed controls, then the scripts' flat argument list."""
    yield from generate(*values[:IMG2IMG_PARAMS], request=request, script_args=list(values[IMG2IMG_PARAMS:]))


def generate(mode, init_image, sketch, upload_image, upload_mask, prompt, negative_prompt, sampler_name, scheduler,
             steps, cfg_scale, width, height, batch_count, batch_size, seed, denoising_strength, resize_mode,
             mask_blur, mask_mode, inpainting_fill, inpaint_area, padding, styles=None, request: gr.Request = None,
             script_args=None):
    """Submit an img2img job and stream its previews, progress and result to the page."""
    values = (mode, init_image, sketch, upload_image, upload_mask, prompt, negative_prompt, sampler_name, scheduler,
              steps, cfg_scale, width, height, batch_count, batch_size, seed, denoising_strength, resize_mode,
              mask_blur, mask_mode, inpainting_fill, inpaint_area, padding)

    def run(p):
        return scripts.run_with_scripts(p, script_args, scripts.scripts_img2img)

    yield from generation.run_processing(lambda: styles_ui.apply_to_processing(build_processing(*values), styles),
                                         "img2img", request, run=run)
