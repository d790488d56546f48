"""A1111's callback registry (`modules.script_callbacks`): extensions register, Easel calls.

Extensions call `on_app_started(fn)`, `on_ui_tabs(fn)`, ... at import time.
Easel calls the matching `*_callback(...)` at the right moment. Each callback
runs inside its own try/except: one that raises is reported with its
extension's name and traceback (modules.extensions.report_error) and the
others still run, so a broken extension never stops the app or a generation.
"""
from __future__ import annotations

import inspect
import logging
import os
from dataclasses import dataclass
from typing import Any, Callable

log = logging.getLogger(__name__)

CALLBACK_NAMES = (
    "app_started", "model_loaded", "ui_tabs", "ui_settings", "before_image_saved", "image_saved",
    "cfg_denoiser", "cfg_denoised", "infotext_pasted", "script_unloaded", "before_ui",
)


@dataclass
class ScriptCallback:
    script: str          # file that registered it (A1111 field name)
    callback: Callable
    name: str = ""


_callbacks: dict[str, list[ScriptCallback]] = {name: [] for name in CALLBACK_NAMES}


# ---- parameter objects (A1111 names and fields) ------------------------------

@dataclass
class ImageSaveParams:
    image: Any                    # PIL image about to be / that was saved; a callback may replace it
    p: Any                        # the Processing object, or None
    filename: str                 # full path of the file
    pnginfo: dict                 # {"parameters": infotext}; a callback may change the text


@dataclass
class CFGDenoiserParams:
    x: Any                        # latents going into the U-Net at this step (a callback may replace them)
    image_cond: Any
    sigma: Any                    # the scheduler timestep of this step
    sampling_step: int
    total_sampling_steps: int
    text_cond: Any
    text_uncond: Any
    denoiser: Any = None


@dataclass
class CFGDenoisedParams:
    x: Any                        # guided model output of this step (a callback may replace it)
    sampling_step: int
    total_sampling_steps: int
    inner_model: Any = None


# ---- registration --------------------------------------------------------------

def _registering_file() -> str:
    """The file of the extension code that called on_*(): the first frame outside this module."""
    for frame in inspect.stack()[2:]:
        if os.path.abspath(frame.filename) != os.path.abspath(__file__):
            return frame.filename
    return "unknown"


def add_callback(kind: str, callback: Callable, name: str | None = None) -> None:
    if kind not in _callbacks:
        raise ValueError(f"unknown callback kind {kind!r}; known: {', '.join(CALLBACK_NAMES)}")
    if not callable(callback):
        raise TypeError(f"on_{kind}: expected a function, got {callback!r}")
    _callbacks[kind].append(ScriptCallback(_registering_file(), callback, name or ""))


def on_app_started(callback, *, name=None):
    """callback(demo: gr.Blocks | None, app: FastAPI) once the server is built."""
    add_callback("app_started", callback, name)


def on_model_loaded(callback, *, name=None):
    """callback(sd_model) after every checkpoint load."""
    add_callback("model_loaded", callback, name)


def on_ui_tabs(callback, *, name=None):
    """callback() -> [(gr.Blocks, label, elem_id), ...]: each becomes a page tab."""
    add_callback("ui_tabs", callback, name)


def on_ui_settings(callback, *, name=None):
    """callback() registers settings with shared.opts.add_option(key, shared.OptionInfo(...))."""
    add_callback("ui_settings", callback, name)


def on_before_image_saved(callback, *, name=None):
    """callback(ImageSaveParams) before an image file is written."""
    add_callback("before_image_saved", callback, name)


def on_image_saved(callback, *, name=None):
    """callback(ImageSaveParams) after an image file is written."""
    add_callback("image_saved", callback, name)


def on_cfg_denoiser(callback, *, name=None):
    """callback(CFGDenoiserParams) before each U-Net call; may replace params.x."""
    add_callback("cfg_denoiser", callback, name)


def on_cfg_denoised(callback, *, name=None):
    """callback(CFGDenoisedParams) after guidance at each step; may replace params.x."""
    add_callback("cfg_denoised", callback, name)


def on_infotext_pasted(callback, *, name=None):
    """callback(infotext: str, params: dict) when an infotext is parsed for pasting; may edit params."""
    add_callback("infotext_pasted", callback, name)


def on_script_unloaded(callback, *, name=None):
    """callback() when scripts are unloaded (server shutdown)."""
    add_callback("script_unloaded", callback, name)


def on_before_ui(callback, *, name=None):
    """callback() just before the page is built."""
    add_callback("before_ui", callback, name)


def clear_callbacks() -> None:
    for entries in _callbacks.values():
        entries.clear()


def remove_callbacks_for_function(callback) -> None:
    for entries in _callbacks.values():
        entries[:] = [c for c in entries if c.callback != callback]


def has(kind: str) -> bool:
    return bool(_callbacks[kind])


# ---- calling -------------------------------------------------------------------

def _run(kind: str, *args):
    """Call every callback of `kind`; a failing one is reported and skipped. Returns the results."""
    from modules import extensions

    results = []
    for entry in list(_callbacks[kind]):
        try:
            results.append(entry.callback(*args))
        except Exception as exc:  # an extension's bug must not stop Easel
            extensions.report_error(extensions.name_for_path(entry.script), f"{kind} callback", exc)
    return results


def app_started_callback(demo, app) -> None:
    _run("app_started", demo, app)


def model_loaded_callback(sd_model) -> None:
    _run("model_loaded", sd_model)


def ui_tabs_callback() -> list:
    """Every (blocks, label, elem_id) returned by on_ui_tabs callbacks, in registration order."""
    from modules import extensions

    tabs = []
    for entry, result in zip(list(_callbacks["ui_tabs"]), _run_each("ui_tabs")):
        if result is None:
            continue
        try:
            for item in result or []:
                blocks, label, elem_id = item[0], item[1], item[2]
                tabs.append((blocks, label, elem_id))
        except Exception as exc:
            extensions.report_error(extensions.name_for_path(entry.script), "ui_tabs callback result "
                                    "(expected a list of (blocks, label, elem_id))", exc)
    return tabs


def _run_each(kind: str) -> list:
    """Like _run, but one result per registered callback (None for a failed one), order kept."""
    from modules import extensions

    results = []
    for entry in list(_callbacks[kind]):
        try:
            results.append(entry.callback())
        except Exception as exc:
            extensions.report_error(extensions.name_for_path(entry.script), f"{kind} callback", exc)
            results.append(None)
    return results


def ui_settings_callback() -> None:
    _run("ui_settings")


def before_image_saved_callback(params: ImageSaveParams) -> None:
    _run("before_image_saved", params)


def image_saved_callback(params: ImageSaveParams) -> None:
    _run("image_saved", params)


def cfg_denoiser_callback(params: CFGDenoiserParams) -> None:
    _run("cfg_denoiser", params)


def cfg_denoised_callback(params: CFGDenoisedParams) -> None:
    _run("cfg_denoised", params)


def infotext_pasted_callback(infotext: str, params: dict) -> None:
    _run("infotext_pasted", infotext, params)


def script_unloaded_callback() -> None:
    _run("script_unloaded")


def before_ui_callback() -> None:
    _run("before_ui")


def denoiser_hooks(total_steps: int) -> dict:
    """Keyword arguments for sampling.sample() that run on_cfg_denoiser / on_cfg_denoised callbacks.

    Empty when no extension registered either, so plain generation pays nothing.
    """
    hooks = {}
    if _callbacks["cfg_denoiser"]:
        def before_denoise(index, total, latents, timestep, conditioning):
            params = CFGDenoiserParams(latents, None, timestep, index, total,
                                       getattr(conditioning, "conds", None), getattr(conditioning, "uncond", None))
            cfg_denoiser_callback(params)
            return params.x

        hooks["before_denoise"] = before_denoise
    if _callbacks["cfg_denoised"]:
        def after_guidance(index, out):
            params = CFGDenoisedParams(out, index, total_steps)
            cfg_denoised_callback(params)
            return params.x

        hooks["cfg_denoiser_hook"] = after_guidance
    return hooks
