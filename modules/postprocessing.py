"""Extras: upscale finished images (the Extras tab and /sdapi/v1/extra-*), A1111's fields and infotext.

Resize mode 0 scales by `upscaling_resize`; mode 1 scales until the image
covers `upscaling_resize_w` x `upscaling_resize_h` (aspect ratio kept) and,
with `upscaling_crop`, cuts the centre to exactly that size. Upscaler 1
makes the image; Upscaler 2, when named and its visibility is above 0, makes
a second one that is blended over it. "None" as Upscaler 1 leaves the image
as it is (A1111). The source image's infotext is kept in the PNG `parameters`
chunk with A1111's "Postprocess ..." keys added to its parameters line; the
keys alone are also written to a `postprocessing` chunk, as A1111 does.

Everything runs as a job on the shared queue, so extras never overlap a
generation or a model switch.
"""
from __future__ import annotations

import html
import logging
import re
from dataclasses import dataclass

from modules import upscalers

log = logging.getLogger(__name__)

MAX_SCALE = 8.0
MAX_OUTPUT_PIXELS = 4096 * 4096
RESIZE_MODES = ("Scale by", "Scale to")


@dataclass
class ExtrasSettings:
    """A1111's extras request fields (the page fills the same ones)."""
    resize_mode: int = 0
    upscaling_resize: float = 2.0
    upscaling_resize_w: int = 512
    upscaling_resize_h: int = 512
    upscaling_crop: bool = True
    upscaler_1: str = upscalers.NONE
    upscaler_2: str = upscalers.NONE
    extras_upscaler_2_visibility: float = 0.0


def validate(settings: ExtrasSettings) -> None:
    """ValueError naming the field that is out of range or unknown."""
    if settings.resize_mode not in (0, 1):
        raise ValueError(f"resize_mode must be 0 (scale by) or 1 (scale to width x height), "
                         f"got {settings.resize_mode!r}")
    if settings.resize_mode == 0:
        if not 1.0 <= float(settings.upscaling_resize) <= MAX_SCALE:
            raise ValueError(f"upscaling_resize must be between 1 and {MAX_SCALE:g}, got {settings.upscaling_resize!r}")
    else:
        for name in ("upscaling_resize_w", "upscaling_resize_h"):
            value = getattr(settings, name)
            if not isinstance(value, int) or not 1 <= value <= 8192:
                raise ValueError(f"{name} must be between 1 and 8192 pixels, got {value!r}")
    if not 0.0 <= float(settings.extras_upscaler_2_visibility) <= 1.0:
        raise ValueError(f"extras_upscaler_2_visibility must be between 0 and 1, "
                         f"got {settings.extras_upscaler_2_visibility!r}")
    upscalers.find(settings.upscaler_1, "upscaler_1", include_none=True)
    upscalers.find(settings.upscaler_2, "upscaler_2", include_none=True)


def plan(settings: ExtrasSettings, size: tuple[int, int]) -> tuple[tuple[int, int], tuple[int, int] | None, dict]:
    """(upscaled size, crop size or None, the "Postprocess ..." infotext keys) for a source of `size`.

    ValueError naming the field when the result would be too large.
    """
    width, height = size
    info: dict = {}
    if settings.resize_mode == 1:
        target_w, target_h = settings.upscaling_resize_w, settings.upscaling_resize_h
        scale = max(target_w / width, target_h / height)
        info["Postprocess upscale to"] = f"{target_w}x{target_h}"
        field = "upscaling_resize_w/upscaling_resize_h"
    else:
        scale = float(settings.upscaling_resize)
        info["Postprocess upscale by"] = _number(scale)
        field = "upscaling_resize"
    if scale > MAX_SCALE:
        raise ValueError(f"{field}: {width}x{height} would be upscaled {scale:.3g}x; at most {MAX_SCALE:g}x is allowed")
    upscaled = (max(1, round(width * scale)), max(1, round(height * scale)))
    if upscaled[0] * upscaled[1] > MAX_OUTPUT_PIXELS:
        raise ValueError(f"{field}: the result would be {upscaled[0]}x{upscaled[1]}; at most {MAX_OUTPUT_PIXELS} "
                         f"pixels (4096x4096) are allowed")
    crop = None
    if settings.resize_mode == 1 and settings.upscaling_crop:
        crop = (settings.upscaling_resize_w, settings.upscaling_resize_h)
        info["Postprocess crop to"] = f"{crop[0]}x{crop[1]}"
    return upscaled, crop, info


def _number(value: float):
    return int(value) if float(value).is_integer() else round(float(value), 3)


def process(image, settings: ExtrasSettings):
    """(upscaled image, "Postprocess ..." keys) for one image; the settings must be validated."""
    from PIL import Image

    first = upscalers.find(settings.upscaler_1, "upscaler_1", include_none=True)
    if image.mode not in ("RGB", "RGBA", "L"):    # palette/CMYK/16-bit: resamplers and networks want these
        image = image.convert("RGBA" if "transparency" in image.info or image.mode in ("LA", "PA") else "RGB")
    if first.name == upscalers.NONE:
        return image.copy(), {}
    size, crop, info = plan(settings, image.size)
    result = upscalers.upscale_to(image, first, size)
    info["Postprocess upscaler"] = first.name
    second = upscalers.find(settings.upscaler_2, "upscaler_2", include_none=True)
    visibility = float(settings.extras_upscaler_2_visibility)
    if second.name != upscalers.NONE and visibility > 0:
        other = upscalers.upscale_to(image, second, size)
        if other.mode != result.mode:
            other = other.convert(result.mode)
        result = Image.blend(result, other, visibility)
        info["Postprocess upscaler 2"] = second.name
    if crop is not None:
        left, top = (result.width - crop[0]) // 2, (result.height - crop[1]) // 2
        result = result.crop((left, top, left + crop[0], top + crop[1]))
    return result, info


def keys_text(info: dict) -> str:
    from modules.infotext import quote

    return ", ".join(f"{key}: {quote(value)}" for key, value in info.items())


_PAIR = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')   # infotext's key: value syntax


def merged_infotext(source: str | None, info: dict) -> str | None:
    """The source infotext with the Postprocess keys on its parameters line (replacing earlier ones).

    None when the source has no infotext: the keys alone would read back as a
    prompt, so they only go into the `postprocessing` chunk.
    """
    if not source:
        return None
    if not info:
        return source
    *lines, last = source.rstrip("\n").split("\n")
    pairs = _PAIR.findall(last)
    if len(pairs) < 3:            # no parameters line (infotext's rule): start one
        return f"{source.rstrip()}\n{keys_text(info)}"
    kept = [f"{key.strip()}: {value.strip()}" for key, value in pairs if not key.strip().startswith("Postprocess ")]
    return "\n".join([*lines, ", ".join(kept + [keys_text(info)])])


def html_info(text: str) -> str:
    """A1111's plaintext_to_html: one <p>, lines joined with <br>."""
    return "<p>" + "<br>\n".join(html.escape(line) for line in text.split("\n")) + "</p>"


@dataclass
class Result:
    image: object             # PIL image, with its infotext in image.info
    infotext: str | None      # the `parameters` text (source + Postprocess keys), None without a source
    keys: str                 # the Postprocess keys alone
    filename: str | None = None


def run(items: list[tuple[object, str | None]], settings: ExtrasSettings, save_dir=None, job=None) -> list[Result]:
    """Upscale each (image, name); save to `save_dir` when given. Stops between images when interrupted."""
    from modules import images as images_module

    results = []
    state = job.progress if job is not None else None
    if state is not None:
        state.job_count, state.sampling_steps = len(items), 1
    for index, (image, name) in enumerate(items):
        if state is not None:
            if state.interrupted:
                break
            state.job_no, state.sampling_step = index, 0
            state.textinfo = f"Extras: image {index + 1}/{len(items)}"
        if not hasattr(image, "size"):          # a path (Batch from Directory): open it now
            from modules import img2img_batch

            image = img2img_batch.open_image(image)
            if image is None:
                log.info("extras: skipped %s (not an image)", name)
                continue
            if settings.upscaler_1 != upscalers.NONE:
                plan(settings, image.size)     # too large: the job fails here; images saved so far stay
        source = images_module.read_infotext(image)
        upscaled, info = process(image, settings)
        keys = keys_text(info)
        text = merged_infotext(source, info)
        upscaled.info = {k: v for k, v in image.info.items() if isinstance(v, str) and k != "parameters"}
        if text:
            upscaled.info["parameters"] = text
        if keys:
            upscaled.info["postprocessing"] = keys
        result = Result(upscaled, text, keys)
        if save_dir is not None:
            extra = {"postprocessing": keys} if keys else None
            # numbered names (00000.png ...) in one flat folder: a later run never overwrites an earlier one
            result.filename, _ = images_module.save_image(
                upscaled, str(save_dir), "", extension=_opt("samples_format", "png"), info=text,
                short_filename=True, no_prompt=True, existing_info=extra)
        results.append(result)
    if state is not None:
        state.job_no, state.sampling_step = len(items), 1
    return results


def _opt(name: str, default):
    from modules import shared

    return getattr(shared.opts, name, default) if shared.opts is not None else default


def output_dir():
    """outdir_extras_samples (default outputs/extras-images), relative to the data dir."""
    from modules import shared

    # A1111: outdir_samples, when set, holds every kind of output
    folder = _opt("outdir_samples", "") or _opt("outdir_extras_samples", "") or "outputs/extras-images"
    return shared.paths.resolve(folder) if shared.paths is not None else folder


def check(items, settings: ExtrasSettings) -> None:
    """Every field and every image's result size; ValueError naming the field (nothing is queued)."""
    validate(settings)
    if settings.upscaler_1 != upscalers.NONE:
        for image, _ in items:
            if hasattr(image, "size"):     # folder paths are checked when the job opens them
                plan(settings, image.size)


def submit(items, settings: ExtrasSettings, save_dir=None, label: str = "extras"):
    """Check, then queue the job; ValueError (nothing queued) when a field is wrong."""
    from modules import shared

    check(items, settings)
    return shared.queue.submit(lambda job: run(items, settings, save_dir, job), label=label)


def directory_items(input_dir: str, output_dir: str, cmd_opts=None):
    """(items, output folder) for Batch from Directory; ValueError naming the field.

    Server folders are refused when the page is reachable from other
    machines (the same rule as img2img's batch, modules/img2img_batch.py).
    Files that are not images are skipped by the job.
    """
    from pathlib import Path

    from modules import img2img_batch

    img2img_batch.check_allowed(cmd_opts)
    source_text, target_text = (input_dir or "").strip(), (output_dir or "").strip()
    if not source_text:
        raise ValueError("Input directory: enter the folder holding the images to upscale")
    source = Path(source_text).expanduser()
    if not source.is_dir():
        raise ValueError(f"Input directory: {source_text!r} is not an existing folder")
    target = Path(target_text).expanduser() if target_text else Path(output_dir())
    if target.exists() and not target.is_dir():
        raise ValueError(f"Output directory: {target_text!r} is a file, not a folder")
    # paths, opened one at a time by the job: a large folder is never held in memory at once
    items = [(path, path.name) for path in sorted((f for f in source.iterdir() if f.is_file()),
                                                  key=lambda f: f.name.lower())]
    if not items:
        raise ValueError(f"Input directory: {source_text!r} holds no files")
    return items, target
