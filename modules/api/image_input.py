"""Images sent to the API: base64 (raw or data: URI) in, checked, decoded; PNG base64 out.

URLs are never fetched: Easel does not reach the network at run time, and a
server that fetches what a request names can be pointed at the machine's own
private services. A URL, bad base64, a file that is not an image, or one
over the size limits is a `FieldError` that the API turns into a 422 naming
the field.
"""
from __future__ import annotations

import base64
import binascii
import io
import re

MAX_IMAGE_BYTES = 50 * 1024 * 1024          # encoded file size
MAX_IMAGE_PIXELS = 4096 * 4096              # decoded width * height (decompression bombs)
DATA_URI = re.compile(r"^data:image/[a-z0-9.+-]+;base64,", re.IGNORECASE)


class FieldError(ValueError):
    """A request field with a bad value; `field` names it for the 422."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field


def decode_image(field: str, value):
    """PIL image from a base64 string (with or without a data: prefix); FieldError otherwise."""
    from PIL import Image

    if not isinstance(value, str) or not value.strip():
        raise FieldError(field, "expected a base64-encoded image (PNG, JPEG or WebP)")
    text = value.strip()
    if re.match(r"^[a-z][a-z0-9+.-]*://", text, re.IGNORECASE):
        raise FieldError(field, "image URLs are not fetched; send the image itself as base64 "
                                "(raw or as a data:image/png;base64,... URI)")
    text = DATA_URI.sub("", text, count=1)
    if len(text) * 3 // 4 > MAX_IMAGE_BYTES:
        raise FieldError(field, f"image is larger than {MAX_IMAGE_BYTES // (1024 * 1024)} MiB")
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise FieldError(field, "not valid base64") from None
    try:
        with Image.open(io.BytesIO(raw)) as probe:
            width, height = probe.size      # read from the header, before decoding any pixels
            if width * height > MAX_IMAGE_PIXELS:
                raise FieldError(field, f"image is {width}x{height}; at most {MAX_IMAGE_PIXELS} pixels "
                                        f"(4096x4096) are accepted")
        image = Image.open(io.BytesIO(raw))
        image.load()
    except FieldError:
        raise
    except Exception as exc:   # PIL raises several types for data that is not an image
        raise FieldError(field, f"base64 decodes, but not to an image PIL can read ({type(exc).__name__})") from None
    return image


def encode_png(image, infotext: str | None) -> str:
    """Raw base64 PNG (no data: prefix, as A1111 returns) with the infotext in its `parameters` chunk."""
    from modules import images

    return base64.b64encode(images.image_to_png_bytes(image, infotext)).decode("ascii")
