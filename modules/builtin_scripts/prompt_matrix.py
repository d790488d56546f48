"""A1111's "Prompt matrix": `base|a|b` makes every combination of the parts after the first, in a labelled grid.

With n variable parts there are 2^n images; image i uses part j when bit j
of i is set. The first ceil(n/2) parts are the columns, the others the rows;
a part that is left out is drawn grey and struck through. The prompt (or the
negative prompt) is joined with ", " (or " ") and the variable parts go after
the constant one, or before it with "Put variable parts at start of prompt".
All images use the same seed unless "Use different seed for each picture".
"""
from __future__ import annotations

import math

import gradio as gr

# modules.processing is imported where it is used: it loads torch, and this file is
# imported while the page is built (tests/test_startup_imports.py)
from modules import grids, scripts
from modules.builtin_scripts._common import infotext_with

TITLE = "Prompt matrix"
MAX_PARTS = 11   # 2^10 images is already far more than anybody waits for


def matrix_prompts(text: str, at_start: bool = False, delimiter: str = "comma") -> tuple[list[str], list[str]]:
    """(every combination's prompt, the parts) of `text` split at '|' (parts stripped)."""
    parts = [part.strip() for part in str(text or "").split("|")]
    if len(parts) < 2:
        raise ValueError("Prompt matrix: the prompt has no '|': write the constant part, then the variable parts "
                         "separated by '|', e.g. 'a cat|red|wearing a hat'")
    if len(parts) > MAX_PARTS:
        raise ValueError(f"Prompt matrix: {len(parts) - 1} variable parts make {2 ** (len(parts) - 1)} images; "
                         f"at most {MAX_PARTS - 1} parts are allowed")
    joiner = {"comma": ", ", "space": " "}.get(delimiter)
    if joiner is None:
        raise ValueError(f"Prompt matrix: variations_delimiter must be 'comma' or 'space', got {delimiter!r}")
    variable = parts[1:]
    prompts = []
    for combination in range(1 << len(variable)):
        chosen = [part for j, part in enumerate(variable) if combination & (1 << j)]
        pieces = chosen + [parts[0]] if at_start else [parts[0]] + chosen
        prompts.append(joiner.join(piece for piece in pieces if piece))
    return prompts, parts


class Script(scripts.Script):
    def title(self):
        return TITLE

    def ui(self, is_img2img):
        gr.HTML("<p>Separate the variable parts of the prompt with '|', e.g. <code>a cat|red|wearing a hat</code>."
                "</p>")
        with gr.Row():
            put_at_start = gr.Checkbox(label="Put variable parts at start of prompt", value=False,
                                       elem_id=self.elem_id("put_at_start"))
            different_seeds = gr.Checkbox(label="Use different seed for each picture", value=False,
                                          elem_id=self.elem_id("different_seeds"))
        with gr.Row():
            prompt_type = gr.Radio(["positive", "negative"], label="Select prompt", value="positive",
                                   elem_id=self.elem_id("prompt_type"))
            delimiter = gr.Radio(["comma", "space"], label="Select joining char", value="comma",
                                 elem_id=self.elem_id("variations_delimiter"))
        margin_size = gr.Slider(0, 500, value=0, step=2, label="Grid margins (px)", elem_id=self.elem_id("margin_size"))
        return [put_at_start, different_seeds, prompt_type, delimiter, margin_size]

    def run(self, p, put_at_start=False, different_seeds=False, prompt_type="positive", variations_delimiter="comma",
            margin_size=0):
        from modules import processing
        if prompt_type not in ("positive", "negative"):
            raise ValueError(f"Prompt matrix: prompt_type must be 'positive' or 'negative', got {prompt_type!r}")
        margin = int(margin_size or 0)
        if not 0 <= margin <= 500:
            raise ValueError(f"Prompt matrix: margin_size must be between 0 and 500, got {margin}")
        negative = prompt_type == "negative"
        source = p.negative_prompt if negative else p.prompt
        if isinstance(source, (list, tuple)):
            source = source[0] if source else ""
        prompts, parts = matrix_prompts(source, bool(put_at_start), variations_delimiter)

        processing.fix_seed(p)
        count = len(prompts)
        # one job: every combination is one image; the batch size divides the count (powers of two)
        p.batch_size = math.gcd(max(1, int(p.batch_size)), count)
        p.n_iter = count // p.batch_size
        if negative:
            p.negative_prompt = prompts
        else:
            p.prompt = prompts
        p.seed = [p.seed + (i if different_seeds else 0) for i in range(count)]
        save_grid = not p.do_not_save_grid and processing._setting("grid_save", True)
        p.do_not_save_grid = True   # the matrix grid below replaces the plain batch grid
        processed = processing.process_images(p)
        if len(processed.images) != count:   # interrupted: no complete matrix to draw
            return processed

        first = processed.images[0]
        grid = grids.image_grid(processed.images, rows=1 << ((len(parts) - 1) // 2), margin=margin)
        grid = grids.draw_prompt_matrix(grid, first.width, first.height, parts, margin)
        text = infotext_with(processed.infotexts[0], {"Script": TITLE})
        grids.with_infotext(grid, text)
        if save_grid:
            from modules import images as image_files

            image_files.save_image(grid, grids.grids_dir(p), "prompt_matrix", seed=processed.seed,
                                   prompt=processed.prompt, extension=processing._setting("grid_format", "png"),
                                   info=text, short_filename=True, p=p, grid=True)
        processed.images.insert(0, grid)
        processed.infotexts.insert(0, text)
        processed.index_of_first_image = 1
        return processed
