"""A1111's "X/Y/Z plot": one image per combination of up to three axes, in a labelled grid.

Arguments (A1111's order, so API clients' script_args line up): x_type,
x_values, x_values_dropdown, y_type, y_values, y_values_dropdown, z_type,
z_values, z_values_dropdown, draw_legend, include_lone_images,
include_sub_grids, no_fixed_seeds, vary_seeds_x, vary_seeds_y, vary_seeds_z,
margin_size, csv_mode. Types are axis names or indices (see _xyz_axes).

Everything is parsed and checked before the first image (unknown sampler or
checkpoint, a bad range, steps out of range): a bad value fails the job with
a message naming the axis. Cells run X fastest, then Y, then Z, except that
an expensive axis (Checkpoint name) is looped outermost so each checkpoint
is loaded once; the original checkpoint is loaded back at the end.
"""
from __future__ import annotations

import gradio as gr
from PIL import Image

# modules.processing is imported where it is used: it loads torch, and this file is
# imported while the page is built (tests/test_startup_imports.py)
from modules import grids, scripts
from modules.builtin_scripts import _xyz_axes as axes
from modules.builtin_scripts._common import (CheckpointSwitcher, combine, copy_processing, empty_processed,
                                             infotext_with)

TITLE = "X/Y/Z plot"


class Script(scripts.Script):
    def title(self):
        return TITLE

    def show(self, is_img2img):
        return True

    def ui(self, is_img2img):
        options = axes.axis_options(is_img2img)
        labels = [o.label for o in options]
        controls = []
        for axis, default in (("x", 1), ("y", 0), ("z", 0)):
            with gr.Row():
                kind = gr.Dropdown(label=f"{axis.upper()} type", choices=labels, value=labels[default], type="index",
                                   elem_id=self.elem_id(f"{axis}_type"), scale=1)
                text = gr.Textbox(label=f"{axis.upper()} values", lines=1, elem_id=self.elem_id(f"{axis}_values"),
                                  placeholder="e.g. 1-5, 1-10 (+2), 10-20 [3], a, \"b, c\"", scale=3)
                pick = gr.Dropdown(label=f"{axis.upper()} values", multiselect=True, choices=[], value=[],
                                   visible=False, elem_id=self.elem_id(f"{axis}_values_dropdown"), scale=3)
            kind.change(_choices_update(options), inputs=[kind], outputs=[pick], show_progress="hidden")
            controls += [kind, text, pick]
        with gr.Row():
            draw_legend = gr.Checkbox(label="Draw legend", value=True, elem_id=self.elem_id("draw_legend"))
            no_fixed_seeds = gr.Checkbox(label="Keep -1 for seeds", value=False,
                                         elem_id=self.elem_id("no_fixed_seeds"))
            vary = [gr.Checkbox(label=f"Vary seeds for {a}", value=False, elem_id=self.elem_id(f"vary_seeds_{a}"))
                    for a in ("x", "y", "z")]
        with gr.Row():
            include_lone_images = gr.Checkbox(label="Include Sub Images", value=False,
                                              elem_id=self.elem_id("include_lone_images"))
            include_sub_grids = gr.Checkbox(label="Include Sub Grids", value=False,
                                            elem_id=self.elem_id("include_sub_grids"))
            csv_mode = gr.Checkbox(label="Use text inputs instead of dropdowns", value=False,
                                   elem_id=self.elem_id("csv_mode"))
        margin_size = gr.Slider(0, 500, value=0, step=2, label="Grid margins (px)", elem_id=self.elem_id("margin_size"))
        return [*controls, draw_legend, include_lone_images, include_sub_grids, no_fixed_seeds, *vary, margin_size,
                csv_mode]

    def run(self, p, x_type=1, x_values="", x_values_dropdown=None, y_type=0, y_values="", y_values_dropdown=None,
            z_type=0, z_values="", z_values_dropdown=None, draw_legend=True, include_lone_images=False,
            include_sub_grids=False, no_fixed_seeds=False, vary_seeds_x=False, vary_seeds_y=False,
            vary_seeds_z=False, margin_size=0, csv_mode=False):
        try:
            plot = Plot(p, self.is_img2img, [(x_type, x_values, x_values_dropdown),
                                             (y_type, y_values, y_values_dropdown),
                                             (z_type, z_values, z_values_dropdown)],
                        draw_legend=bool(draw_legend), no_fixed_seeds=bool(no_fixed_seeds),
                        vary_seeds=(bool(vary_seeds_x), bool(vary_seeds_y), bool(vary_seeds_z)),
                        margin=int(margin_size or 0), csv_mode=bool(csv_mode))
        except ValueError as exc:   # the message says which script refused (the API returns it as a 422)
            message = str(exc)
            raise ValueError(message if message.startswith(TITLE) else f"{TITLE}: {message}") from None
        return plot.run(include_lone_images=bool(include_lone_images), include_sub_grids=bool(include_sub_grids))


def _choices_update(options):
    def update(index):
        option = options[index] if isinstance(index, int) and 0 <= index < len(options) else options[0]
        if option.choices is None:
            return gr.update(visible=False, choices=[], value=[])
        return gr.update(visible=True, choices=option.choices(), value=[])
    return update


class Plot:
    """One X/Y/Z run: the axes parsed and checked, then the cells generated and put in grids."""

    AXES = ("X", "Y", "Z")

    def __init__(self, p, is_img2img: bool, specs, draw_legend=True, no_fixed_seeds=False,
                 vary_seeds=(False, False, False), margin=0, csv_mode=False):
        from modules import processing
        if not 0 <= margin <= 500:
            raise ValueError(f"margin_size must be between 0 and 500, got {margin}")
        self.p, self.draw_legend, self.no_fixed_seeds, self.vary_seeds, self.margin = \
            p, draw_legend, no_fixed_seeds, vary_seeds, margin
        self.options, self.texts, self.values = [], [], []
        for axis, (kind, text, dropdown) in zip(self.AXES, specs):
            option = axes.find_axis(axis, kind, is_img2img)
            values = axes.parse_values(axis, option, text, dropdown, use_dropdown=not csv_mode)
            if not no_fixed_seeds:
                values = axes.fix_seeds(option, values)
            values = axes.confirm_values(axis, option, p, values)
            self.options.append(option)
            self.texts.append(", ".join(str(v) for v in dropdown) if (dropdown and option.choices and not csv_mode)
                              else str(text or ""))
            self.values.append(values)
        labels = [o.label for o in self.options if o.label != "Nothing"]
        duplicated = {label for label in labels if labels.count(label) > 1}
        if duplicated:
            raise ValueError(f"axis {', '.join(sorted(duplicated))} is used on more than one of X/Y/Z")
        if not no_fixed_seeds:
            processing.fix_seed(p)  # every cell starts from the same seed (A1111), unless the Seed axis sets it
        self.switcher = CheckpointSwitcher() if any(o.label == "Checkpoint name" for o in self.options) else None
        self.cells = {index: self._cell_processing(*index) for index in self._order()}
        self._check_cells()

    # -- cells ---------------------------------------------------------------
    def _order(self) -> list[tuple[int, int, int]]:
        """(ix, iy, iz) in generation order: Z, Y, X from outer to inner, costly axes moved outermost."""
        counts = [len(v) for v in self.values]
        loops = sorted([2, 1, 0], key=lambda a: -self.options[a].cost)   # stable: z, y, x by default
        order = []

        def walk(level: int, index: list):
            if level == len(loops):
                order.append(tuple(index))
                return
            axis = loops[level]
            for i in range(counts[axis]):
                index[axis] = i
                walk(level + 1, index)

        walk(0, [0, 0, 0])
        return order

    def _cell_processing(self, ix: int, iy: int, iz: int):
        pc = copy_processing(self.p, do_not_save_grid=True)
        pc.xyz_checkpoint = None
        for option, values, i in zip(self.options, self.values, (ix, iy, iz)):
            option.apply(pc, values[i], values)
        counts = [len(v) for v in self.values]
        vary_x, vary_y, vary_z = self.vary_seeds
        if isinstance(pc.seed, int) and pc.seed >= 0:
            xdim = counts[0] if vary_x else 1
            ydim = counts[1] if vary_y else 1
            pc.seed += (ix if vary_x else 0) + (iy * xdim if vary_y else 0) + (iz * xdim * ydim if vary_z else 0)
        if pc.xyz_checkpoint is not None:
            pc.sd_model = None     # the cell uses whatever the model manager has loaded for it
        return pc

    def _check_cells(self) -> None:
        """Every cell's parameters are valid before the first image is made (messages name the field)."""
        from modules import processing, shared

        if self.switcher is not None:
            self.switcher.check_in_job(self.p)
        family = self.p.sd_model.family if self.p.sd_model is not None else (
            shared.models.current_family() if shared.models is not None else None)
        for (ix, iy, iz), pc in self.cells.items():
            try:
                processing.validate(pc, family)
            except ValueError as exc:
                where = ", ".join(f"{a} = {o.label_of(v[i]) or v[i]}" for a, o, v, i in
                                  zip(self.AXES, self.options, self.values, (ix, iy, iz)) if o.label != "Nothing")
                raise ValueError(f"cell ({where}): {exc}") from None

    # -- running -------------------------------------------------------------
    def run(self, include_lone_images=False, include_sub_grids=False):
        from modules import jobs, processing

        state = jobs.current_state()
        results = {}
        try:
            for index, pc in self.cells.items():
                if state.interrupted:
                    break
                if pc.xyz_checkpoint is not None:
                    self.switcher.load(pc.xyz_checkpoint)
                state.textinfo = f"X/Y/Z plot: cell {len(results) + 1} of {len(self.cells)}"
                results[index] = processing.process_images(pc)
                if state.skipped and not state.interrupted:
                    state.skipped = False   # skip ends this cell; the plot goes on
        finally:
            if self.switcher is not None:
                self.switcher.restore()
        if not results:
            return empty_processed(self.p, state)
        if not any(r.images for r in results.values()):
            return combine(list(results.values()))
        return self._assemble(results, include_lone_images, include_sub_grids)

    def _cell_image(self, result, size) -> Image.Image:
        if result is None or not result.images:
            return Image.new("RGB", size, grids.BACKGROUND)   # interrupted: an empty cell keeps the layout
        shown = result.images[result.index_of_first_image:]
        image = grids.image_grid(shown, result.batch_size) if len(shown) > 1 else shown[0]
        if image.size != size:  # the Size axis: cells of different sizes are centred in the largest
            canvas = Image.new("RGB", size, grids.BACKGROUND)
            canvas.paste(image, ((size[0] - image.width) // 2, (size[1] - image.height) // 2))
            image = canvas
        return image

    def _assemble(self, results: dict, include_lone_images: bool, include_sub_grids: bool):
        from modules import processing
        counts = [len(v) for v in self.values]
        firsts = {}
        for index, result in results.items():
            if result.images:
                shown = result.images[result.index_of_first_image:]
                one = grids.image_grid(shown, result.batch_size) if len(shown) > 1 else shown[0]
                firsts[index] = one.size
        width = max(w for w, _ in firsts.values())
        height = max(h for _, h in firsts.values())
        labels = [[o.label_of(v) for v in values] for o, values in zip(self.options, self.values)]
        sub_grids, sub_texts = [], []
        for iz in range(counts[2]):
            cells = [self._cell_image(results.get((ix, iy, iz)), (width, height))
                     for iy in range(counts[1]) for ix in range(counts[0])]
            grid = grids.image_grid(cells, rows=counts[1], margin=self.margin)
            if self.draw_legend:
                grid = grids.draw_grid_annotations(grid, width, height, [[t] for t in labels[0]],
                                                   [[t] for t in labels[1]], self.margin)
            first = next((results[i] for i in sorted(results, key=lambda i: (i[1], i[0])) if i[2] == iz
                          and results[i].images), None)
            sub_texts.append(infotext_with(first.info if first else None, self._params(z=False)))
            sub_grids.append(grid)
        main_text = infotext_with(next(r.info for r in results.values() if r.images), self._params(z=True))
        if len(sub_grids) > 1:
            main = grids.combine_side_by_side(sub_grids, labels[2] if self.draw_legend else [], self.margin)
            out_grids = [main] + (sub_grids if include_sub_grids else [])
            texts = [main_text] + (sub_texts if include_sub_grids else [])
        else:
            out_grids, texts = sub_grids, [main_text]
        for grid, text in zip(out_grids, texts):
            grids.with_infotext(grid, text)
        if processing._setting("grid_save", True) and not getattr(self.p, "do_not_save_grid", False):
            for grid, text in zip(out_grids, texts):
                self._save(grid, text)
        ordered = [results[i] for i in sorted(results, key=lambda i: (i[2], i[1], i[0]))]
        return combine(ordered, grids=out_grids, grid_infotexts=texts, keep_images=include_lone_images)

    def _params(self, z: bool) -> dict:
        """The grid's extra infotext keys (A1111): Script, X Type, X Values, Fixed X Values for seed axes, ..."""
        params = {"Script": TITLE}
        for axis, option, text, values in zip(self.AXES, self.options, self.texts, self.values):
            if option.label == "Nothing" or (axis == "Z" and not z):
                continue
            params[f"{axis} Type"] = option.label
            params[f"{axis} Values"] = text
            if option.label in ("Seed", "Var. seed") and not self.no_fixed_seeds:
                params[f"Fixed {axis} Values"] = ", ".join(str(v) for v in values)
        return params

    def _save(self, grid, text) -> None:
        from modules import processing
        from modules import images as image_files

        image_files.save_image(grid, grids.grids_dir(self.p), "xyz_grid", seed=None, prompt=None,
                               extension=processing._setting("grid_format", "png"), info=text, short_filename=True,
                               p=self.p, grid=True)
