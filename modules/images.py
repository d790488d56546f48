"""Saving images with their infotext, A1111-compatible (`modules.images.save_image`).

Names: NNNNN-SEED-PROMPT.ext, NNNNN one more than the highest number already
in the folder. Every name part is sanitised (no path separators, control or
Windows-forbidden characters, reserved Windows names, trailing dots/spaces)
and capped. Writes are atomic: the final name is reserved with O_EXCL (two
savers can never pick the same number), the image is written to a hidden
temporary file in the same folder and moved over the reservation with
os.replace, so nobody ever reads a half-written image.

Infotext: PNG gets a `parameters` text chunk (iTXt when not Latin-1);
JPEG and WebP get EXIF UserComment in piexif's unicode encoding.
"""

from __future__ import annotations

import datetime
import io
import os
import re
import struct
import tempfile
import threading

import piexif
import piexif.helper
from PIL import Image, PngImagePlugin

from modules import script_callbacks

FORMATS = {"png": "PNG", "jpg": "JPEG", "jpeg": "JPEG", "webp": "WEBP"}
MAX_PART_CHARS = 128       # A1111's cap on one pattern part (the prompt)
MAX_NAME_CHARS = 128       # whole file/folder name, extension included
MAX_NAME_BYTES = 240       # file systems cap names at 255 bytes
_FORBIDDEN = set('#<>:"/\\|?*') | {chr(c) for c in range(32)} | {"\x7f"}
_RESERVED = {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(10)), *(f"LPT{i}" for i in range(10))}
_EXIF_LIMIT = 65533        # a JPEG APP1 segment holds at most 64 KiB

# A1111's defaults for the settings save_image reads, used when no settings are loaded (tests, scripts).
_DEFAULT_OPTS = {
    "samples_filename_pattern": "",
    "save_images_add_number": True,
    "save_to_dirs": True,
    "grid_save_to_dirs": True,
    "directories_filename_pattern": "[date]",
    "directories_max_prompt_words": 8,
    "enable_pnginfo": True,
    "save_txt": False,
    "jpeg_quality": 80,
}

_reserve_lock = threading.Lock()


def _opt(name):
    from modules import shared  # late: shared imports the job queue, which imports processing

    opts = getattr(shared, "opts", None)
    if opts is None:
        return _DEFAULT_OPTS[name]
    try:
        return getattr(opts, name)
    except AttributeError:
        return _DEFAULT_OPTS[name]


def _cap(text: str, max_chars: int, max_bytes: int = MAX_NAME_BYTES) -> str:
    text = text[:max_chars]
    while len(text.encode("utf-8")) > max_bytes:
        text = text[:-1]
    return text


def sanitize_filename_part(text, replace_spaces: bool = True) -> str:
    """One part of a file name: forbidden and control characters become '_', capped, no edge spaces/dots."""
    if text is None:
        return ""
    text = str(text)
    if replace_spaces:
        text = text.replace(" ", "_")
    text = "".join("_" if c in _FORBIDDEN else c for c in text)
    text = text.lstrip(" ")
    text = _cap(text, MAX_PART_CHARS)
    return text.rstrip(" .")


def safe_name(name: str) -> str:
    """A whole file or folder name: sanitised, capped, never '.', '..' or a reserved Windows device name."""
    name = "".join("_" if c in _FORBIDDEN else c for c in str(name)).strip(" ")
    name = name.lstrip(".")  # no hidden files, no '..'
    stem, dot, ext = name.rpartition(".") if "." in name else (name, "", "")
    if len(name) > MAX_NAME_CHARS or len(name.encode("utf-8")) > MAX_NAME_BYTES:
        tail = dot + ext if len(ext) <= 5 else ""
        room = MAX_NAME_CHARS - len(tail)
        stem = _cap(stem if tail else name, room, MAX_NAME_BYTES - len(tail.encode("utf-8")))
        name = stem.rstrip(" .") + tail
    name = name.rstrip(" .")
    if name.split(".")[0].upper() in _RESERVED:
        name = "_" + name
    return name or "_"


class FilenameGenerator:
    """Expands A1111 name patterns such as "[seed]-[prompt_spaces]" or "[date]"."""

    def __init__(self, p, seed, prompt, image=None):
        self.p, self.seed, self.prompt, self.image = p, seed, prompt or "", image

    def _prompt_words(self):
        words = [w for w in re.split(r"[\s,()\[\]{}:<>|]+", self.prompt) if w]
        return " ".join(words[: int(_opt("directories_max_prompt_words"))]) or "no_prompt"

    def tag(self, name: str):
        now = datetime.datetime.now()
        p = self.p
        values = {
            "seed": lambda: self.seed,
            "prompt": lambda: sanitize_filename_part(self.prompt),
            "prompt_spaces": lambda: sanitize_filename_part(self.prompt, replace_spaces=False),
            "prompt_words": lambda: sanitize_filename_part(self._prompt_words(), replace_spaces=False),
            "date": lambda: now.strftime("%Y-%m-%d"),
            "datetime": lambda: now.strftime("%Y%m%d%H%M%S"),
            "steps": lambda: getattr(p, "steps", None),
            "cfg": lambda: getattr(p, "cfg_scale", None),
            "sampler": lambda: getattr(p, "sampler_name", None),
            "width": lambda: self.image.width if self.image is not None else getattr(p, "width", None),
            "height": lambda: self.image.height if self.image is not None else getattr(p, "height", None),
        }
        getter = values.get(name.lower())
        value = getter() if getter else None
        return None if value is None else sanitize_filename_part(str(value), replace_spaces=False)

    def apply(self, pattern: str) -> str:
        def replace(match):
            value = self.tag(match.group(1))
            return match.group(0) if value is None else value  # unknown tags stay, as in A1111
        return re.sub(r"\[(\w+)\]", replace, pattern)


def next_sequence_number(path: str, basename: str = "") -> int:
    """One more than the highest NNNNN already used in `path` (names `NNNNN...`, or `basename-NNNN...`)."""
    prefix = f"{basename}-" if basename else ""
    pattern = re.compile(re.escape(prefix) + r"(\d+)")
    highest = -1
    try:
        names = os.listdir(path)
    except FileNotFoundError:
        return 0
    for name in names:
        match = pattern.match(name)
        if match:
            highest = max(highest, int(match.group(1)))
    return highest + 1


def _reserve(fullfn: str) -> bool:
    try:
        fd = os.open(fullfn, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    os.close(fd)
    return True


def _pick_numbered_name(path, basename, decoration, extension) -> str:
    with _reserve_lock:  # other processes are kept apart by O_EXCL alone
        start = next_sequence_number(path, basename)
        for i in range(1000):
            number = f"{start + i:05}" if not basename else f"{basename}-{start + i:04}"
            fullfn = os.path.join(path, safe_name(f"{number}{decoration}.{extension}"))
            if _reserve(fullfn):
                return fullfn
    raise RuntimeError(f"save_image: no free file name in {path} after 1000 tries")


def _exif_bytes(info: str) -> bytes:
    comment = piexif.helper.UserComment.dump(info, encoding="unicode")
    exif = piexif.dump({"Exif": {piexif.ExifIFD.UserComment: comment}})
    if len(exif) > _EXIF_LIMIT:
        raise ValueError(f"info: {len(exif)} bytes of infotext do not fit in JPEG/WebP EXIF "
                         f"(limit {_EXIF_LIMIT}); save as png instead")
    return exif


def _encode(image: Image.Image, fmt: str, info: str | None, section: str, existing_info: dict | None) -> bytes:
    out = io.BytesIO()
    if fmt == "PNG":
        pnginfo = PngImagePlugin.PngInfo()
        for key, value in (existing_info or {}).items():
            if isinstance(value, str) and key != section:
                pnginfo.add_text(key, value)
        if info is not None:
            pnginfo.add_text(section, info)  # Pillow writes iTXt when the text is not Latin-1
        image.save(out, "PNG", pnginfo=pnginfo)
    else:
        if image.mode not in ("RGB", "L") and fmt == "JPEG":
            image = image.convert("RGB")
        kwargs = {"quality": int(_opt("jpeg_quality"))}
        if info is not None:
            kwargs["exif"] = _exif_bytes(info)
        image.save(out, fmt, **kwargs)
    return out.getvalue()


def _write_atomic(fullfn: str, data: bytes) -> None:
    folder = os.path.dirname(fullfn) or "."
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".part", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, fullfn)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_image(image, path, basename, seed=None, prompt=None, extension="png", info=None, short_filename=False,
               no_prompt=False, grid=False, pnginfo_section_name="parameters", p=None, existing_info=None,
               forced_filename=None, suffix="", save_to_dirs=None):
    """Save `image` under `path` with its infotext; returns (full file name, txt file name or None).

    Same signature and naming as A1111's: NNNNN-SEED-PROMPT.ext by default,
    `basename-NNNN` when a basename is given (grids), `forced_filename`
    verbatim (sanitised). `save_to_dirs` (None: the setting) puts the image
    in a sub-folder named by directories_filename_pattern ("[date]").
    """
    extension = str(extension).lower().lstrip(".")
    if extension not in FORMATS:
        raise ValueError(f"extension: {extension!r} is not supported; choose one of {', '.join(FORMATS)}")
    namegen = FilenameGenerator(p, seed, prompt, image)

    if save_to_dirs is None:
        save_to_dirs = _opt("grid_save_to_dirs") if grid else (_opt("save_to_dirs") and not no_prompt)
    if save_to_dirs:
        folder = namegen.apply(_opt("directories_filename_pattern") or "[prompt_words]")
        path = os.path.join(path, safe_name(folder.strip("\\/")))
    os.makedirs(path, exist_ok=True)

    if forced_filename is None:
        if short_filename or seed is None:
            decoration = ""
        elif save_to_dirs:
            decoration = _opt("samples_filename_pattern") or "[seed]"
        else:
            decoration = _opt("samples_filename_pattern") or "[seed]-[prompt_spaces]"
        decoration = namegen.apply(decoration) + sanitize_filename_part(suffix, replace_spaces=False)
        add_number = _opt("save_images_add_number") or decoration == ""
        if add_number:
            if decoration:
                decoration = f"-{decoration}"
            fullfn = _pick_numbered_name(path, basename, decoration, extension)
        else:
            fullfn = os.path.join(path, safe_name(f"{decoration}.{extension}"))
    else:
        fullfn = os.path.join(path, safe_name(f"{forced_filename}.{extension}"))

    # extensions' on_before_image_saved may replace the image or edit the infotext
    params = script_callbacks.ImageSaveParams(image, p, fullfn, {pnginfo_section_name: info})
    script_callbacks.before_image_saved_callback(params)
    image, info = params.image, params.pnginfo.get(pnginfo_section_name, info)
    write_info = info if _opt("enable_pnginfo") or extension != "png" else None
    try:
        _write_atomic(fullfn, _encode(image, FORMATS[extension], write_info, pnginfo_section_name, existing_info))
    except BaseException:
        if os.path.exists(fullfn) and os.path.getsize(fullfn) == 0:
            os.unlink(fullfn)  # drop our empty reservation
        raise

    txt_fullfn = None
    if info is not None and _opt("save_txt"):
        txt_fullfn = os.path.splitext(fullfn)[0] + ".txt"
        _write_atomic(txt_fullfn, str(info).encode("utf-8"))
    script_callbacks.image_saved_callback(params)
    return fullfn, txt_fullfn


def image_to_png_bytes(image: Image.Image, infotext: str | None) -> bytes:
    """PNG bytes with the infotext in a `parameters` chunk (what the API returns)."""
    return _encode(image, "PNG", infotext, "parameters", None)


def read_infotext(image) -> str | None:
    """The infotext stored in an image: PNG `parameters`, else EXIF UserComment; None when absent.

    Accepts a PIL image or a path.
    """
    if not isinstance(image, Image.Image):
        with Image.open(image) as opened:
            opened.load()
            return read_infotext(opened)
    text = image.info.get("parameters")
    exif = image.info.get("exif")
    if exif:
        try:
            raw = piexif.load(exif).get("Exif", {}).get(piexif.ExifIFD.UserComment, b"")
        except (ValueError, struct.error):
            raw = b""
        if raw:
            try:
                comment = piexif.helper.UserComment.load(raw)
            except ValueError:
                comment = raw.decode("utf-8", errors="ignore")
            if comment:
                text = comment
    return text
