"""modules/grids.py: plain and annotated grids (no model needed)."""
from __future__ import annotations

from PIL import Image

from modules import grids


def tiles(count, size=(32, 24)):
    return [Image.new("RGB", size, (i * 40 % 256, 100, 200)) for i in range(count)]


def test_image_grid_places_cells_row_by_row_with_margin():
    images = tiles(6)
    grid = grids.image_grid(images, rows=2, margin=4)
    assert grid.size == (3 * 32 + 2 * 4, 2 * 24 + 4)
    assert grid.getpixel((0, 0)) == images[0].getpixel((0, 0))
    assert grid.getpixel((32 + 4, 0)) == images[1].getpixel((0, 0))          # second column
    assert grid.getpixel((0, 24 + 4)) == images[3].getpixel((0, 0))          # second row starts with image 3
    assert grid.getpixel((33, 0)) == grids.BACKGROUND                        # the margin


def test_automatic_rows_are_about_square():
    assert grids.grid_rows(4) == 2 and grids.grid_rows(2) == 1 and grids.grid_rows(9) == 3 and grids.grid_rows(1) == 1
    assert grids.image_grid(tiles(2)).size == (64, 24)


def test_annotations_add_headers_and_labels():
    grid = grids.image_grid(tiles(4, (64, 64)), rows=2)
    out = grids.draw_grid_annotations(grid, 64, 64, ["Seed: 1", "Seed: 2"], ["Steps: 1", "Steps: 2"])
    left, top = out.width - 128, out.height - 128
    assert left > 0 and top > 0
    assert out.crop((left, top, out.width, out.height)).tobytes() == grid.tobytes()   # cells untouched
    header = out.crop((left, 0, out.width, top)).convert("L")
    labels = out.crop((0, top, left, out.height)).convert("L")
    assert header.getextrema()[0] < 100 and labels.getextrema()[0] < 100


def test_no_texts_means_no_header():
    grid = grids.image_grid(tiles(2, (64, 64)), rows=1)
    out = grids.draw_grid_annotations(grid, 64, 64, ["", ""], [""])
    assert out.size == grid.size


def test_inactive_prompt_matrix_parts_are_grey():
    grid = grids.image_grid(tiles(2, (64, 64)), rows=1)
    out = grids.draw_prompt_matrix(grid, 64, 64, ["base", "red"])
    top = out.height - 64
    inactive = out.crop((0, 0, 64, top)).convert("L")       # column 0: "red" left out -> grey
    active = out.crop((64, 0, 128, top)).convert("L")       # column 1: "red" used -> black
    assert active.getextrema()[0] < 60 and 60 < inactive.getextrema()[0] < 200


def test_long_labels_wrap_inside_the_cell_width():
    grid = grids.image_grid(tiles(2, (64, 64)), rows=1)
    one = grids.draw_grid_annotations(grid, 64, 64, ["short", "short"], [])
    long = grids.draw_grid_annotations(grid, 64, 64, ["a very long label that wraps", "short"], [])
    assert long.width == one.width and long.height > one.height
