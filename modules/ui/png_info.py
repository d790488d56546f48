"""The PNG Info tab: drop an image, read its generation parameters, send them to txt2img, img2img, inpaint
or the image to Extras."""
from __future__ import annotations

import html

import gradio as gr
from PIL import Image


def read_image_infotext(path: str | None) -> str | None:
    """The infotext stored in the image file at `path` (PNG text chunk or EXIF), or None."""
    from modules.images import read_infotext

    if not path:
        return None
    with Image.open(path) as image:
        return read_infotext(image)


def infotext_to_html(text: str | None) -> str:
    if text is None:
        return '<div class="easel-note">No generation parameters found in this image.</div>'
    return '<div class="easel-infotext">' + html.escape(text).replace("\n", "<br>") + "</div>"


def image_for_img2img(path: str | None) -> Image.Image | None:
    """The PNG Info image as the img2img tab takes it (RGBA, loaded into memory)."""
    if not path:
        return None
    with Image.open(path) as image:
        return image.convert("RGBA")


class PngInfoTab:
    def __init__(self):
        with gr.Row(equal_height=False):
            with gr.Column():
                self.image = gr.Image(label="Source", elem_id="pnginfo_image", type="filepath", format="png",
                                      sources=["upload", "clipboard"], height=480)
            with gr.Column():
                self.info = gr.HTML("", elem_id="pnginfo_generation_info")
                self.raw = gr.Textbox(visible=False, elem_id="pnginfo_raw")
                with gr.Row():
                    self.send_to_txt2img = gr.Button("Send to txt2img", elem_id="pnginfo_send_to_txt2img")
                    self.send_to_img2img = gr.Button("Send to img2img", elem_id="pnginfo_send_to_img2img")
                    self.send_to_inpaint = gr.Button("Send to inpaint", elem_id="pnginfo_send_to_inpaint")
                    self.send_to_extras = gr.Button("Send to extras", elem_id="pnginfo_send_to_extras")

        def show(path):
            text = read_image_infotext(path)
            return ("" if path is None else infotext_to_html(text)), (text or "")

        self.image.change(show, inputs=[self.image], outputs=[self.info, self.raw], show_progress="hidden")

    def bind_txt2img(self, txt2img, tabs: gr.Tabs, txt2img_tab_id: str) -> None:
        """Send to txt2img fills the txt2img fields the infotext names (hires fix included) and switches tab."""
        from modules.ui import paste

        attrs = paste.paste_targets(txt2img, paste.TXT2IMG_FIELDS)
        choices = paste.dropdown_choices(txt2img, ("sampler", "scheduler", "hr_upscaler", "hr_sampler_name"))

        def send(text):
            updates = paste.updates_for(text, attrs, paste.TXT2IMG_FIELDS, choices)
            enable_hr = updates[attrs.index("enable_hr")] if "enable_hr" in attrs else gr.skip()
            accordion = gr.update(open=enable_hr["value"]) if isinstance(enable_hr, dict) and "value" in enable_hr \
                else gr.skip()
            return (*updates, accordion, gr.Tabs(selected=txt2img_tab_id))

        outputs = [getattr(txt2img, attr) for attr in attrs] + [txt2img.hr_accordion, tabs]
        self.send_to_txt2img.click(send, inputs=[self.raw], outputs=outputs, show_progress="hidden")

    def bind_img2img(self, img2img, tabs: gr.Tabs, img2img_tab_id: str) -> None:
        """Send to img2img / inpaint: the image into that sub-tab, the fields from its infotext, switch tabs."""
        from modules.ui import paste

        attrs = paste.paste_targets(img2img, paste.IMG2IMG_FIELDS)
        choices = paste.dropdown_choices(img2img, ("sampler", "scheduler"))
        fields = [getattr(img2img, attr) for attr in attrs]

        def send_plain(path, text):
            return (image_for_img2img(path), "img2img", gr.Tabs(selected="img2img"),
                    *paste.updates_for(text, attrs, paste.IMG2IMG_FIELDS, choices), gr.Tabs(selected=img2img_tab_id))

        def send_inpaint(path, text):
            image = image_for_img2img(path)
            editor = None if image is None else {"background": image, "layers": [], "composite": image}
            return (editor, "inpaint", gr.Tabs(selected="inpaint"),
                    *paste.updates_for(text, attrs, paste.IMG2IMG_FIELDS, choices), gr.Tabs(selected=img2img_tab_id))

        tail = [img2img.mode, img2img.mode_tabs, *fields, tabs]
        self.send_to_img2img.click(send_plain, inputs=[self.image, self.raw], outputs=[img2img.init_image, *tail],
                                   show_progress="hidden")
        self.send_to_inpaint.click(send_inpaint, inputs=[self.image, self.raw], outputs=[img2img.sketch, *tail],
                                   show_progress="hidden")

    def bind_extras(self, extras, tabs: gr.Tabs, extras_tab_id: str) -> None:
        """Send to extras: the file itself (infotext included) into Extras' Single Image, and switch tabs."""
        from modules.ui.extras import SOURCES

        def send(path):
            return path, SOURCES[0], gr.Tabs(selected="single_image"), gr.Tabs(selected=extras_tab_id)

        self.send_to_extras.click(send, inputs=[self.image],
                                  outputs=[extras.image, extras.source, extras.source_tabs, tabs],
                                  show_progress="hidden")
