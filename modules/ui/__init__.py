"""The Gradio page: a top bar (model choice and status) over one tab per feature.

app.py mounts `create_ui()` with `gr.mount_gradio_app(app, blocks, "/", **ui_launch_kwargs())`:
since Gradio 6, theme, css and js belong to launch/mount, not to `gr.Blocks()`.
Tabs exist only for features that work; none is a placeholder.
"""
from __future__ import annotations

from pathlib import Path

import gradio as gr

HERE = Path(__file__).parent

# Gradio writes every preview and result image it sends into its cache:
# sweep files older than 6 hours every 30 minutes (saved images live in outputs/).
CACHE_SWEEP = (1800, 6 * 3600)


def create_ui() -> gr.Blocks:
    from modules.ui import scripts_ui
    from modules.ui.extensions_tab import ExtensionsTab
    from modules.ui.extras import ExtrasTab
    from modules.ui.img2img import Img2ImgTab
    from modules.ui.png_info import PngInfoTab
    from modules.ui.settings import SettingsTab
    from modules.ui.top_bar import TopBar
    from modules.ui.txt2img import Txt2ImgTab

    # on_ui_tabs callbacks build their own gr.Blocks: outside ours, or Gradio would render them in place
    extension_tabs = scripts_ui.extension_tabs()
    with gr.Blocks(title="Easel", analytics_enabled=False, delete_cache=CACHE_SWEEP) as blocks:
        top_bar = TopBar()
        scripts_ui.extension_notice(blocks)
        with gr.Tabs(elem_id="tabs") as tabs:
            with gr.Tab("txt2img", id="txt2img", elem_id="tab_txt2img"):
                txt2img = Txt2ImgTab()
            with gr.Tab("img2img", id="img2img", elem_id="tab_img2img"):
                img2img = Img2ImgTab()
            with gr.Tab("Extras", id="extras", elem_id="tab_extras"):
                extras = ExtrasTab()
            with gr.Tab("PNG Info", id="pnginfo", elem_id="tab_pnginfo"):
                png_info = PngInfoTab()
            scripts_ui.add_extension_tabs(extension_tabs)   # on_ui_tabs: after the built-in tabs, before Settings (A1111 order)
            with gr.Tab("Settings", id="settings", elem_id="tab_settings"):
                settings = SettingsTab()
            with gr.Tab("Extensions", id="extensions", elem_id="tab_extensions"):   # after Settings, as in A1111
                extensions_tab = ExtensionsTab()
        top_bar.bind_native_size(txt2img.width, txt2img.height)
        top_bar.wire()
        png_info.bind_txt2img(txt2img, tabs, "txt2img")
        png_info.bind_img2img(img2img, tabs, "img2img")
        png_info.bind_extras(extras, tabs, "extras")
        settings.refresh_on_load(blocks)
        extensions_tab.refresh_on_load(blocks)
    return blocks


def ui_launch_kwargs() -> dict:
    """theme/css/js/head for `gr.mount_gradio_app` (or `Blocks.launch`), extensions' files included.

    run_history is off: Gradio would otherwise keep every prompt in the
    browser's storage and add a "Runs" page that A1111 users do not expect.
    """
    from modules import extensions

    compat = (HERE / "a1111_compat.js").read_text(encoding="utf-8")
    return {
        "run_history": False,
        "theme": gr.themes.Default(primary_hue="orange"),
        "css": (HERE / "style.css").read_text(encoding="utf-8") + "\n" + extensions.page_css(),
        "js": (HERE / "shortcuts.js").read_text(encoding="utf-8"),
        # A1111's helpers for extension scripts, then every extension's javascript/*.js
        "head": f'<script type="text/javascript">\n{compat}\n</script>\n' + extensions.page_head(),
    }
