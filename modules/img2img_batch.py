"""img2img Batch: every image of a server folder through img2img as one queue job (A1111's "Batch" sub-tab).

The tab's settings apply to each image; a mask folder turns it into inpaint
batch (a mask is found by the image's file name stem; a folder holding one
image uses it for every picture). Outputs keep the input file names (A1111
behaviour; `name-2`, `name-3`... when a picture makes several images), carry
their infotext, and go to the output folder or, when that is empty, to the
usual img2img outputs folder. Files that are not images are skipped with a
note in the result; Interrupt stops between (and within) images, keeping the
finished ones.

The folders are paths on the server, read and written with its rights: that
is fine while only this machine can reach the page, so it is refused when
the server listens beyond loopback (--listen, --share, a non-loopback
--server-name) unless --enable-insecure-extension-access is given.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from PIL import Image, UnidentifiedImageError

if TYPE_CHECKING:
    from modules.processing import Processed


@dataclass
class BatchPlan:
    """What a batch job will read and where it writes (folders checked when the plan is made)."""
    files: list[Path]
    output_dir: Path
    mask_dir: Path | None
    make_processing: Callable      # (init image, mask or None) -> StableDiffusionProcessingImg2Img


def check_allowed(cmd_opts) -> None:
    """ValueError when the page is reachable from other machines and batch folders were not allowed."""
    from modules import cmd_args

    if cmd_opts is None or not cmd_args.listens_beyond_loopback(cmd_opts):
        return
    if getattr(cmd_opts, "enable_insecure_extension_access", False):
        return
    raise ValueError("Batch: reading and writing server folders is refused because the server listens beyond "
                     "127.0.0.1 (--listen, --share or --server-name); restart with "
                     "--enable-insecure-extension-access to allow it")


def _folder(label: str, text: str | None, must_exist: bool = True) -> Path | None:
    text = (text or "").strip()
    if not text:
        return None
    path = Path(text).expanduser()
    if must_exist and not path.is_dir():
        raise ValueError(f"{label}: {text!r} is not an existing folder" if not path.exists()
                         else f"{label}: {text!r} is a file, not a folder")
    if not must_exist and path.exists() and not path.is_dir():
        raise ValueError(f"{label}: {text!r} is a file, not a folder")
    return path.resolve()


def default_output_dir() -> Path:
    from modules import shared

    return Path(shared.paths.outputs_dir) / "img2img-images" / time.strftime("%Y-%m-%d")


def plan(input_dir: str, output_dir: str, mask_dir: str, make_processing, cmd_opts=None) -> BatchPlan:
    """Check the folders (ValueError naming the field) and list the input files, sorted by name."""
    check_allowed(cmd_opts)
    source = _folder("Input directory", input_dir)
    if source is None:
        raise ValueError("Input directory: enter the folder holding the images to process")
    target = _folder("Output directory", output_dir, must_exist=False) or default_output_dir()
    masks = _folder("Inpaint batch mask directory", mask_dir)
    if target == source:
        raise ValueError("Output directory: must differ from the input directory (outputs keep the input file "
                         "names and would overwrite the inputs)")
    files = sorted((f for f in source.iterdir() if f.is_file()), key=lambda f: f.name.lower())
    if not files:
        raise ValueError(f"Input directory: {str(source)!r} holds no files")
    return BatchPlan(files=files, output_dir=target, mask_dir=masks, make_processing=make_processing)


def open_image(path: Path) -> Image.Image | None:
    """The decoded image, or None when the file is not an image PIL can read."""
    try:
        with Image.open(path) as image:
            image.load()
            return image.copy() if image.mode != "P" else image.convert("RGBA")
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        return None


def find_mask(mask_dir: Path, image_path: Path) -> Path | None:
    """The mask for an image: same file name, else the same stem with any extension, else the only file."""
    same = mask_dir / image_path.name
    if same.is_file():
        return same
    candidates = sorted(f for f in mask_dir.iterdir() if f.is_file())
    by_stem = [f for f in candidates if f.stem == image_path.stem]
    if by_stem:
        return by_stem[0]
    return candidates[0] if len(candidates) == 1 else None


def run(plan: BatchPlan, run_one, state) -> "Processed":
    """Job body: process every input in order; returns one Processed with all outputs and the notes.

    `run_one(p) -> Processed` generates one picture (the tab passes its
    scripts runner); `state` is the job's JobState (interrupt, progress text).
    """
    from modules import images as image_files
    from modules.processing import _setting

    all_images, all_texts, all_seeds, saved, notes = [], [], [], [], []
    last = None
    total = len(plan.files)
    for number, path in enumerate(plan.files, start=1):
        if state.interrupted:
            break
        state.textinfo = f"Image {number}/{total}: {path.name}"
        image = open_image(path)
        if image is None:
            notes.append(f"Batch: skipped {path.name} (not an image)")
            continue
        mask = None
        if plan.mask_dir is not None:
            mask_path = find_mask(plan.mask_dir, path)
            mask = open_image(mask_path) if mask_path is not None else None
            if mask is None:
                notes.append(f"Batch: skipped {path.name} (no mask image for it in the mask directory)")
                continue
        p = plan.make_processing(image, mask)
        p.do_not_save_samples = True      # saved below under the input's name
        p.do_not_save_grid = True
        processed = run_one(p)
        first = processed.index_of_first_image
        made = processed.images[first:]
        texts = processed.infotexts[first:]
        if processed.interrupted and not made:
            break
        extension = _setting("samples_format", "png")
        for index, (result, text) in enumerate(zip(made, texts)):
            name = path.stem if index == 0 else f"{path.stem}-{index + 1}"
            file, _ = image_files.save_image(result, str(plan.output_dir), "", extension=extension, info=text,
                                             p=p, forced_filename=name, save_to_dirs=False)
            saved.append(file)
        all_images.extend(made)
        all_texts.extend(texts)
        all_seeds.extend(processed.all_seeds[:len(made)])
        notes.extend(w for w in processed.warnings if w not in notes)
        last = processed
    state.textinfo = ""
    if last is None:
        if state.interrupted:
            return None
        raise ValueError(f"Input directory: none of the {total} file(s) could be processed; " + "; ".join(notes))
    return dataclasses.replace(last, images=all_images, infotexts=all_texts, all_seeds=all_seeds,
                               index_of_first_image=0, saved_paths=saved, warnings=notes,
                               interrupted=bool(state.interrupted), latents=[])
