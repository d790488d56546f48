"""Example extension: append a suffix to every prompt (an always-visible script).

Shows the parts most extensions use: a Script with ui() and process(), a
setting registered from on_ui_settings, and an infotext entry.
"""
import gradio as gr

from modules import script_callbacks, scripts, shared


class PromptSuffix(scripts.Script):
    def title(self):
        return "Prompt suffix"

    def show(self, is_img2img):
        return scripts.AlwaysVisible          # its own section on txt2img and img2img, hooks always run

    def ui(self, is_img2img):
        enabled = gr.Checkbox(value=False, label="Append a suffix to every prompt", elem_id=self.elem_id("enabled"))
        suffix = gr.Textbox(value="", label="Suffix (empty: the default from Settings)", elem_id=self.elem_id("suffix"))
        return [enabled, suffix]               # their values arrive in the hooks as *args, in this order

    def process(self, p, enabled, suffix):
        if not enabled:
            return
        suffix = suffix.strip() or shared.opts.prompt_suffix_default
        p.all_prompts = [f"{prompt}, {suffix}" for prompt in p.all_prompts]
        p.extra_generation_params["Prompt suffix"] = suffix   # shown in the infotext


def on_ui_settings():
    section = ("prompt-suffix", "Prompt suffix")
    shared.opts.add_option("prompt_suffix_default", shared.OptionInfo(
        "highly detailed", "Default suffix", section=section))


script_callbacks.on_ui_settings(on_ui_settings)
