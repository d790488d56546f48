"""The PNG Info tab: drop an image, read its generation parameters, send them to txt2img."""
from __future__ import annotations

import html

import gradio as gr
from PIL import Image

# infotext key -> (txt2img tab attribute, converter)
_TXT2IMG_FIELDS = {
    "Prompt": ("prompt", str),
    "Negative prompt": ("negative_prompt", str),
    "Steps": ("steps", int),
    "Sampler": ("sampler", str),
    "Schedule type": ("scheduler", str),
    "CFG scale": ("cfg_scale", float),
    "Seed": ("seed", int),
    "Size-1": ("width", int),
    "Size-2": ("height", int),
}


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


def txt2img_values(text: str | None, choices: dict[str, list]) -> list:
    """Updates for the txt2img fields (in `_TXT2IMG_FIELDS` order) from an infotext.

    Fields the infotext lacks, that fail to convert, or (for dropdowns, whose
    allowed values are in `choices` by attribute) name an unknown value are
    left as they are.
    """
    from modules.infotext import parse_infotext

    params = parse_infotext(text) if text else {}
    updates = []
    for key, (attr, convert) in _TXT2IMG_FIELDS.items():
        value = params.get(key)
        try:
            value = convert(value) if value is not None else None
        except (TypeError, ValueError):
            value = None
        if value is not None and attr in choices and value not in choices[attr]:
            value = None
        updates.append(gr.skip() if value is None else gr.update(value=value))
    return updates


class PngInfoTab:
    def __init__(self):
        with gr.Row(equal_height=False):
            with gr.Column():
                self.image = gr.Image(label="Source", elem_id="pnginfo_image", type="filepath", format="png",
                                      sources=["upload", "clipboard"], height=480)
            with gr.Column():
                self.info = gr.HTML("", elem_id="pnginfo_generation_info")
                self.raw = gr.Textbox(visible=False, elem_id="pnginfo_raw")
                self.send_to_txt2img = gr.Button("Send to txt2img", elem_id="pnginfo_send_to_txt2img")

        def show(path):
            text = read_image_infotext(path)
            return ("" if path is None else infotext_to_html(text)), (text or "")

        self.image.change(show, inputs=[self.image], outputs=[self.info, self.raw], show_progress="hidden")

    def bind_txt2img(self, txt2img, tabs: gr.Tabs, txt2img_tab_id: str) -> None:
        """Send to txt2img fills the txt2img fields from the infotext and switches tab."""
        components = [getattr(txt2img, attr) for attr, _ in _TXT2IMG_FIELDS.values()]
        choices = {attr: [value for _, value in getattr(txt2img, attr).choices] for attr in ("sampler", "scheduler")}

        def send(text):
            return (*txt2img_values(text, choices), gr.Tabs(selected=txt2img_tab_id))

        self.send_to_txt2img.click(send, inputs=[self.raw], outputs=[*components, tabs], show_progress="hidden")
