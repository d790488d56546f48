"""Image grids: plain grids of a batch, annotated grids (X/Y/Z plot, prompt matrix), and saving them.

A1111's layout, drawn with PIL: cells left to right, top to bottom, an
optional margin between cells; annotated grids get column headers on top and
row headers on the left (text wrapped to the cell, centred). An inactive
annotation (a prompt-matrix part that is left out of that row or column) is
drawn grey and struck through.

Grids are saved to `outdir_grids`, else `outdir_txt2img_grids` /
`outdir_img2img_grids` (relative paths are under the data dir), named
`grid-NNNN.<grid_format>` with the infotext inside, as A1111 does.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass

from PIL import Image, ImageDraw, ImageFont

ACTIVE_COLOR = (0, 0, 0)
INACTIVE_COLOR = (153, 153, 153)
BACKGROUND = (255, 255, 255)


@dataclass
class GridAnnotation:
    text: str = ""
    is_active: bool = True


def grid_rows(count: int, batch_size: int = 1, rows: int | None = None) -> int:
    """A1111's row count: `rows` if given, else setting `n_rows`: > 0 that many, 0 the batch size, -1 about square."""
    if rows:
        return max(1, min(int(rows), count))
    from modules.processing import _setting

    setting = int(_setting("n_rows", -1))
    if setting > 0:
        return min(setting, count)
    if setting == 0:
        return max(1, min(batch_size, count))
    return max(1, min(round(math.sqrt(count)), count))


def image_grid(images: list, batch_size: int = 1, rows: int | None = None, margin: int = 0) -> Image.Image:
    """Images in a grid of `rows` rows (see grid_rows), cells the size of the first image, `margin` px between."""
    if not images:
        raise ValueError("image_grid: no images")
    rows = grid_rows(len(images), batch_size, rows)
    cols = math.ceil(len(images) / rows)
    w, h = images[0].size
    grid = Image.new("RGB", (cols * w + (cols - 1) * margin, rows * h + (rows - 1) * margin), BACKGROUND)
    for i, image in enumerate(images):
        x, y = i % cols, i // cols
        grid.paste(image.convert("RGB") if image.mode != "RGB" else image, (x * (w + margin), y * (h + margin)))
    return grid


def _font(size: int):
    return ImageFont.load_default(size=max(8, size))


def _wrap(draw: ImageDraw.ImageDraw, text: str, font, width: int) -> list[str]:
    """Words of `text` in lines no wider than `width` (a single long word stays on its own line)."""
    lines = []
    for paragraph in str(text).split("\n"):
        line = ""
        for word in paragraph.split(" "):
            candidate = f"{line} {word}".strip()
            if line and draw.textlength(candidate, font=font) > width:
                lines.append(line)
                line = word
            else:
                line = candidate
        lines.append(line)
    return lines


def _block(draw, annotations: list[GridAnnotation], font, width: int) -> list[tuple[str, bool]]:
    """All lines of one header cell: (text, active) for each wrapped line of each annotation."""
    lines = []
    for annotation in annotations:
        for text in _wrap(draw, annotation.text, font, width):
            lines.append((text, annotation.is_active))
    return lines


def draw_grid_annotations(grid: Image.Image, width: int, height: int, hor_texts: list, ver_texts: list,
                          margin: int = 0) -> Image.Image:
    """A new image: `grid` (cells of width x height, `margin` apart) with headers above and to the left.

    hor_texts / ver_texts: one list of GridAnnotation per column / row (a
    plain string is one active annotation).
    """
    hor = [[a if isinstance(a, GridAnnotation) else GridAnnotation(str(a)) for a in _as_list(t)] for t in hor_texts]
    ver = [[a if isinstance(a, GridAnnotation) else GridAnnotation(str(a)) for a in _as_list(t)] for t in ver_texts]
    cols = len(hor) or max(1, round((grid.width + margin) / (width + margin)))
    rows = len(ver) or max(1, round((grid.height + margin) / (height + margin)))
    font_size = max(10, (width + height) // 25)
    font = _font(font_size)
    line_height = font_size + font_size // 3
    scratch = ImageDraw.Draw(Image.new("RGB", (1, 1)))

    hor_lines = [_block(scratch, texts, font, width) for texts in hor]
    has_ver = any(t.text for texts in ver for t in texts)
    left_width = int(width * 0.75) if has_ver else 0
    ver_lines = [_block(scratch, texts, font, max(left_width - 8, 16)) for texts in ver]
    has_hor = any(text for lines in hor_lines for text, _ in lines)
    top = (max(len(lines) for lines in hor_lines) * line_height + line_height // 2) if has_hor else 0

    result = Image.new("RGB", (grid.width + left_width, grid.height + top), BACKGROUND)
    result.paste(grid, (left_width, top))
    draw = ImageDraw.Draw(result)

    def draw_lines(lines, cx: float, cy: float) -> None:
        y = cy - len(lines) * line_height / 2
        for text, active in lines:
            color = ACTIVE_COLOR if active else INACTIVE_COLOR
            draw.text((cx, y + line_height / 2), text, font=font, fill=color, anchor="mm")
            if not active:  # struck through, as A1111 draws a prompt-matrix part that is left out
                length = draw.textlength(text, font=font)
                mid = y + line_height / 2
                draw.line((cx - length / 2, mid, cx + length / 2, mid), fill=color, width=max(1, font_size // 12))
            y += line_height

    if has_hor:
        for col in range(min(cols, len(hor_lines))):
            draw_lines(hor_lines[col], left_width + col * (width + margin) + width / 2, top / 2)
    if has_ver:
        for row in range(min(rows, len(ver_lines))):
            draw_lines(ver_lines[row], left_width / 2, top + row * (height + margin) + height / 2)
    return result


def _as_list(value) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def draw_prompt_matrix(grid: Image.Image, width: int, height: int, parts: list[str], margin: int = 0) -> Image.Image:
    """A1111's prompt-matrix labels: the first half of the variable parts across, the rest down.

    `parts[0]` is the constant part; image i of the matrix uses variable part
    j when bit j of i is set, so column x and row y switch the parts on by
    their bits (x: the first ceil(n/2) parts, y: the others).
    """
    variable = list(parts[1:])
    boundary = math.ceil(len(variable) / 2)
    across, down = variable[:boundary], variable[boundary:]
    hor = [[GridAnnotation(text, bool(pos & (1 << i))) for i, text in enumerate(across)] for pos in range(1 << len(across))]
    ver = [[GridAnnotation(text, bool(pos & (1 << i))) for i, text in enumerate(down)] for pos in range(1 << len(down))]
    return draw_grid_annotations(grid, width, height, hor, ver, margin)


def combine_side_by_side(grids: list[Image.Image], labels: list[str], margin: int = 0) -> Image.Image:
    """Z of X/Y/Z: the sub-grids in one row, each headed by its label (sub-grids may differ in size)."""
    width = max(g.width for g in grids)
    height = max(g.height for g in grids)
    cells = []
    for g in grids:
        cell = Image.new("RGB", (width, height), BACKGROUND)
        cell.paste(g, ((width - g.width) // 2, 0))
        cells.append(cell)
    row = image_grid(cells, rows=1, margin=margin)
    if not any(labels):
        return row
    return draw_grid_annotations(row, width, height, [[GridAnnotation(t)] for t in labels], [[]], margin)


# ---- saving and the batch grid -------------------------------------------------

def grids_dir(p) -> str:
    """Where grids of `p` go: p.outpath_grids, else the settings (A1111: outdir_grids or the tab's folder)."""
    from modules import shared
    from modules.processing import _setting

    if getattr(p, "outpath_grids", None):
        return str(p.outpath_grids)
    key = "outdir_img2img_grids" if getattr(p, "is_img2img", False) else "outdir_txt2img_grids"
    default = "outputs/img2img-grids" if getattr(p, "is_img2img", False) else "outputs/txt2img-grids"
    folder = _setting("outdir_grids", "") or _setting(key, default) or default
    if os.path.isabs(folder):
        return folder
    paths = getattr(shared, "paths", None)
    base = str(paths.data_dir) if paths is not None else os.getcwd()
    return os.path.join(base, folder)


def save_grid(p, grid: Image.Image, infotext: str | None, seed=None, prompt=None) -> str:
    """Save a grid as A1111 does (grid-NNNN.<grid_format> in the grids folder); returns the path."""
    from modules import images as image_files
    from modules.processing import _setting

    path, _ = image_files.save_image(grid, grids_dir(p), "grid", seed=seed, prompt=prompt,
                                     extension=_setting("grid_format", "png"), info=infotext,
                                     short_filename=True, p=p, grid=True)
    return path


def with_infotext(image: Image.Image, infotext: str | None) -> Image.Image:
    """The PNG `parameters` text travels with the image object (the page and API write it out)."""
    if infotext:
        image.info["parameters"] = infotext
    return image


def add_batch_grid(p, processed) -> None:
    """A1111's grid of a batch: when more than one image was made (or grid_only_if_multiple is off),
    `return_grid` puts it first in processed.images (its infotext first in infotexts) and `grid_save`
    saves it. Nothing happens with p.do_not_save_grid (scripts that make their own grids set it;
    the API sets it unless save_images is true, as A1111)."""
    from modules.processing import _setting

    images = processed.images
    if p.do_not_save_grid or not images:
        return
    if len(images) < 2 and _setting("grid_only_if_multiple", True):
        return
    want_return, want_save = _setting("return_grid", True), _setting("grid_save", True)
    if not (want_return or want_save):
        return
    grid = image_grid(images, p.batch_size)
    text = processed.infotexts[0] if processed.infotexts else None
    if want_save:
        save_grid(p, grid, text, seed=processed.seed, prompt=processed.prompt)
    if want_return:
        processed.images.insert(0, with_infotext(grid, text))
        processed.infotexts.insert(0, text)
        processed.index_of_first_image = 1
