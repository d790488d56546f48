"""The built-in selectable scripts (X/Y/Z plot, prompt matrix, prompts from file) on the tiny SD1 model."""
from __future__ import annotations

import pytest
import torch

from modules import infotext, processing
from modules.builtin_scripts import _axis_values, prompt_matrix, prompts_from_file, xyz_grid

torch.set_num_threads(1)


# ---- value parsers ----------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("1-5", [1, 2, 3, 4, 5]),
    ("1-10 (+2)", [1, 3, 5, 7, 9]),
    ("10-20 [3]", [10, 15, 20]),
    ("5-1", [5, 4, 3, 2, 1]),
    ("10-1 (-3)", [10, 7, 4, 1]),
    ("1, 3-4, 7", [1, 3, 4, 7]),
    ("-1, 5", [-1, 5]),
    (" 2 ,, 3 ", [2, 3]),
])
def test_integer_lists_and_ranges(text, expected):
    assert _axis_values.parse_numbers(text, int) == expected


@pytest.mark.parametrize("text, expected", [
    ("0.5-1.5 (+0.5)", [0.5, 1.0, 1.5]),
    ("5-10 [3]", [5.0, 7.5, 10.0]),
    ("1-3", [1.0, 2.0, 3.0]),
    ("7, 7.5", [7.0, 7.5]),
    ("1-2 (+0.25)", [1.0, 1.25, 1.5, 1.75, 2.0]),
])
def test_float_lists_and_ranges(text, expected):
    assert _axis_values.parse_numbers(text, float) == pytest.approx(expected)


@pytest.mark.parametrize("text, kind, message", [
    ("1, x", int, "'x' is not a whole number"),
    ("1.5", int, "'1.5' is not a whole number"),
    ("1-5 (+0)", int, "step"),
    ("1-5 (-1)", int, "goes away"),
    ("1-5 [0]", int, "at least 1"),
])
def test_bad_numbers_are_named(text, kind, message):
    with pytest.raises(ValueError, match=message):
        _axis_values.parse_numbers(text, kind)


def test_string_items_follow_csv_quoting():
    assert _axis_values.split_items('red, "blue, dark", green ,') == ["red", "blue, dark", "green"]


# ---- prompts from file: line parser ------------------------------------------------------------

def test_plain_line_is_a_prompt():
    assert prompts_from_file.parse_line("a red circle -- with dashes") == {"prompt": "a red circle -- with dashes"}


def test_option_line_is_parsed_with_shell_quoting():
    line = ('--prompt "a cat, sitting" --negative_prompt blurry ugly --seed 12 --steps 3 --cfg_scale 6.5 '
            '--sampler_name "Euler a" --width 64 --height 96 --batch_size 2 --n_iter 1 --styles "A, B"')
    assert prompts_from_file.parse_line(line) == {
        "prompt": "a cat, sitting", "negative_prompt": "blurry ugly", "seed": 12, "steps": 3, "cfg_scale": 6.5,
        "sampler_name": "Euler a", "width": 64, "height": 96, "batch_size": 2, "n_iter": 1, "styles": ["A", "B"]}


@pytest.mark.parametrize("line, message", [
    ("--prompt x --sead 3", "unknown option '--sead'"),
    ("--prompt x --steps", "'--steps' has no value"),
    ("--steps many", "option '--steps'"),
    ('--prompt "unclosed', "quotes"),
])
def test_bad_option_lines_are_named(line, message):
    with pytest.raises(ValueError, match=message):
        prompts_from_file.parse_line(line)


def test_parse_lines_names_the_line_number():
    with pytest.raises(ValueError, match=r"line 3 .*unknown option '--bogus'"):
        prompts_from_file.parse_lines("a cat\n\n--prompt dog --bogus 1\n")


def test_prompt_matrix_combinations():
    prompts, parts = prompt_matrix.matrix_prompts("a cat|red|hat")
    assert parts == ["a cat", "red", "hat"]
    assert prompts == ["a cat", "a cat, red", "a cat, hat", "a cat, red, hat"]
    prompts, _ = prompt_matrix.matrix_prompts("a cat|red|hat", at_start=True, delimiter="space")
    assert prompts == ["a cat", "red a cat", "hat a cat", "red hat a cat"]
    with pytest.raises(ValueError, match=r"'\|'"):
        prompt_matrix.matrix_prompts("no bars here")


# ---- generation --------------------------------------------------------------------------------

def txt2img(model, tmp_path, **fields):
    fields.setdefault("width", 64)
    fields.setdefault("height", 64)
    fields.setdefault("steps", 2)
    fields.setdefault("sampler_name", "Euler")
    fields.setdefault("do_not_save_samples", True)
    return processing.StableDiffusionProcessingTxt2Img(sd_model=model, outpath_grids=str(tmp_path / "grids"), **fields)


def xyz_args(x_type="Nothing", x_values="", y_type="Nothing", y_values="", z_type="Nothing", z_values="",
             draw_legend=True, include_lone_images=True, include_sub_grids=False, no_fixed_seeds=False, margin=0):
    return [x_type, x_values, [], y_type, y_values, [], z_type, z_values, [], draw_legend, include_lone_images,
            include_sub_grids, no_fixed_seeds, False, False, False, margin, False]


def run_xyz(p, *args):
    script = xyz_grid.Script()
    return script.run(p, *args)


def test_xyz_seed_by_steps_cells_equal_single_images(sd1_model, tmp_path):
    p = txt2img(sd1_model, tmp_path, prompt="a red circle", seed=5)
    result = run_xyz(p, *xyz_args("Seed", "11, 12, 13", "Steps", "1-2"))
    assert result.index_of_first_image == 1
    assert len(result.images) == 1 + 6 and len(result.infotexts) == 7
    grid, cells = result.images[0], result.images[1:]
    assert grid.width > 3 * 64 and grid.height > 2 * 64          # cells plus the drawn legend
    parsed = [infotext.parse_infotext(t) for t in result.infotexts[1:]]
    assert [(d["Seed"], d["Steps"]) for d in parsed] == [
        ("11", "1"), ("12", "1"), ("13", "1"), ("11", "2"), ("12", "2"), ("13", "2")]
    for (seed, steps), cell in zip([(12, 1), (13, 2)], [cells[1], cells[5]]):
        alone = processing.process_images(txt2img(sd1_model, tmp_path, prompt="a red circle", seed=seed, steps=steps))
        assert alone.images[0].tobytes() == cell.tobytes()
    grid_info = infotext.parse_infotext(result.infotexts[0])
    assert grid_info["Script"] == "X/Y/Z plot" and grid_info["X Type"] == "Seed" and grid_info["Y Type"] == "Steps"
    assert grid_info["Fixed X Values"] == "11, 12, 13" and grid_info["Y Values"] == "1-2"
    assert grid.info["parameters"] == result.infotexts[0]
    saved = list((tmp_path / "grids").rglob("xyz_grid-*.png"))
    assert len(saved) == 1


def test_xyz_prompt_sr_changes_each_cells_prompt(sd1_model, tmp_path):
    p = txt2img(sd1_model, tmp_path, prompt="a red ball", negative_prompt="red blur", seed=3, steps=1)
    result = run_xyz(p, *xyz_args("Prompt S/R", "red, blue, green"))
    parsed = [infotext.parse_infotext(t) for t in result.infotexts[1:]]
    assert [d["Prompt"] for d in parsed] == ["a red ball", "a blue ball", "a green ball"]
    assert [d["Negative prompt"] for d in parsed] == ["red blur", "blue blur", "green blur"]
    assert result.images[2].tobytes() != result.images[1].tobytes()


def test_xyz_without_sub_images_returns_only_the_grid_and_z_combines(sd1_model, tmp_path):
    p = txt2img(sd1_model, tmp_path, prompt="x", seed=1, steps=1)
    result = run_xyz(p, *xyz_args("Seed", "1,2", z_type="CFG Scale", z_values="3, 9", include_lone_images=False,
                                  draw_legend=False))
    assert len(result.images) == 1 and result.index_of_first_image == 1
    assert result.images[0].size == (2 * 2 * 64, 64)   # two 2x1 sub-grids side by side, no legend
    with_subgrids = run_xyz(txt2img(sd1_model, tmp_path, prompt="x", seed=1, steps=1),
                            *xyz_args("Seed", "1,2", z_type="CFG Scale", z_values="3, 9", include_lone_images=False,
                                      include_sub_grids=True, draw_legend=False))
    assert [im.size for im in with_subgrids.images] == [(256, 64), (128, 64), (128, 64)]
    assert with_subgrids.images[1].tobytes() == result.images[0].crop((0, 0, 128, 64)).tobytes()


def test_xyz_random_seed_is_chosen_once(sd1_model, tmp_path):
    p = txt2img(sd1_model, tmp_path, prompt="x", seed=-1, steps=1)
    result = run_xyz(p, *xyz_args("CFG Scale", "5, 7"))
    seeds = [infotext.parse_infotext(t)["Seed"] for t in result.infotexts[1:]]
    assert seeds[0] == seeds[1]


@pytest.mark.parametrize("args, message", [
    (xyz_args("Sampler", "Euler, Eulerr"), r"X values \(Sampler\): unknown sampler 'Eulerr'; choices: .*Euler a"),
    (xyz_args("Steps", "1, 0"), "Steps 0 is outside 1..150"),
    (xyz_args("Seed", "1", "Prompt S/R", "purple, red"), "did not find 'purple'"),
    (xyz_args("Size", "64x64, 65x64"), "width must be a multiple of 8"),
    (xyz_args("Size", "big"), "not WIDTHxHEIGHT"),
    (xyz_args("No such axis", "1"), "X type: unknown axis 'No such axis'; choices: 0: Nothing, 1: Seed"),
    (xyz_args("Seed", "1", "Seed", "2"), "more than one"),
    (xyz_args("Schedule type", "Karras, Wobbly"), "unknown schedule type 'Wobbly'"),
])
def test_xyz_bad_values_fail_before_any_image(sd1_model, tmp_path, monkeypatch, args, message):
    calls = []
    monkeypatch.setattr(processing, "process_images", lambda p: calls.append(p))
    with pytest.raises(ValueError, match=message) as failure:
        run_xyz(txt2img(sd1_model, tmp_path, prompt="a red ball"), *args)
    assert str(failure.value).startswith("X/Y/Z plot: ")
    assert calls == []


def test_prompt_matrix_grid_and_labels(sd1_model, tmp_path):
    p = txt2img(sd1_model, tmp_path, prompt="a cat|red|hat|night", seed=9, steps=1, batch_size=2)
    result = prompt_matrix.Script().run(p, False, False, "positive", "comma", 0)
    assert len(result.images) == 1 + 8 and result.index_of_first_image == 1
    assert result.all_prompts == ["a cat", "a cat, red", "a cat, hat", "a cat, red, hat", "a cat, night",
                                  "a cat, red, night", "a cat, hat, night", "a cat, red, hat, night"]
    assert set(result.all_seeds) == {9}                                  # same seed unless asked otherwise
    assert [infotext.parse_infotext(t)["Prompt"] for t in result.infotexts[1:]] == result.all_prompts
    grid = result.images[0]
    # 4 columns (red, hat) x 2 rows (night) of 64 px cells, plus a header row and a label column
    assert grid.width > 4 * 64 and grid.height > 2 * 64
    left, top = grid.width - 4 * 64, grid.height - 2 * 64
    header = grid.crop((left, 0, grid.width, top)).convert("L")
    label_column = grid.crop((0, top, left, grid.height)).convert("L")
    assert header.getextrema()[0] < 100 and label_column.getextrema()[0] < 100   # text was drawn
    assert "Script: Prompt matrix" in result.infotexts[0]
    # the 4th cell (red + hat, no night) is the image made with that prompt alone
    alone = processing.process_images(txt2img(sd1_model, tmp_path, prompt="a cat, red, hat", seed=9, steps=1))
    assert alone.images[0].tobytes() == result.images[4].tobytes()


def test_prompt_matrix_different_seeds_and_negative(sd1_model, tmp_path):
    p = txt2img(sd1_model, tmp_path, prompt="x", negative_prompt="blur|dark", seed=4, steps=1)
    result = prompt_matrix.Script().run(p, True, True, "negative", "space", 4)
    assert result.all_seeds == [4, 5]
    assert result.all_negative_prompts == ["blur", "dark blur"]


def test_prompts_from_file_lines_and_seeds(sd1_model, tmp_path):
    p = txt2img(sd1_model, tmp_path, prompt="", seed=100, steps=1)
    text = 'a red circle\n--prompt "a blue square" --seed 7 --steps 2 --cfg_scale 5\n\na green line'
    result = prompts_from_file.Script().run(p, True, False, "start", text)
    parsed = [infotext.parse_infotext(t) for t in result.infotexts]
    assert [d["Prompt"] for d in parsed] == ["a red circle", "a blue square", "a green line"]
    assert [d["Seed"] for d in parsed] == ["100", "7", "102"]           # iterated per line; line 2 has its own
    assert parsed[1]["Steps"] == "2" and parsed[1]["CFG scale"] == "5.0"
    same = prompts_from_file.Script().run(txt2img(sd1_model, tmp_path, prompt="tail", seed=-1, steps=1),
                                          False, True, "end", "a\nb")
    assert len(set(same.all_seeds)) == 1
    assert same.all_prompts == ["tail a", "tail b"]


def test_prompts_from_file_errors_before_any_image(sd1_model, tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(processing, "process_images", lambda p: calls.append(p))
    with pytest.raises(ValueError, match=r"line 2 .*unknown option '--colour'"):
        prompts_from_file.Script().run(txt2img(sd1_model, tmp_path), False, False, "start", "ok\n--colour red")
    with pytest.raises(ValueError, match=r"prompt 2: width must be a multiple of 8"):
        prompts_from_file.Script().run(txt2img(sd1_model, tmp_path), False, False, "start", "ok\n--width 65")
    with pytest.raises(ValueError, match="no prompts"):
        prompts_from_file.Script().run(txt2img(sd1_model, tmp_path), False, False, "start", "\n \n")
    assert calls == []


def test_xyz_on_img2img_denoising_axis(sd1_model, tmp_path):
    from PIL import Image

    from modules.img2img import StableDiffusionProcessingImg2Img

    picture = Image.new("RGB", (64, 64), (200, 40, 40))
    p = StableDiffusionProcessingImg2Img(sd_model=sd1_model, init_images=[picture], prompt="x", seed=2, steps=2,
                                         width=64, height=64, sampler_name="Euler", do_not_save_samples=True,
                                         outpath_grids=str(tmp_path / "grids"))
    script = xyz_grid.Script()
    script.is_img2img = True
    result = script.run(p, *xyz_args("Denoising", "0.3, 0.9"))
    parsed = [infotext.parse_infotext(t) for t in result.infotexts[1:]]
    assert [d["Denoising strength"] for d in parsed] == ["0.3", "0.9"]
    import numpy as np

    light, heavy = (np.abs(np.asarray(im, dtype=float) - np.asarray(picture, dtype=float)).mean()
                    for im in result.images[1:])
    assert light < heavy                       # more denoising moves further from the init image


def test_xyz_interrupt_stops_between_cells(sd1_model, tmp_path):
    from modules import jobs

    queue = jobs.JobQueue()
    made = []
    original = processing.process_images

    def counting(p):
        made.append(p.seed)
        result = original(p)
        if len(made) == 2:
            queue.interrupt()
        return result

    def run(job):
        processing.process_images = counting
        try:
            return run_xyz(txt2img(sd1_model, tmp_path, prompt="x", steps=1), *xyz_args("Seed", "1-4"))
        finally:
            processing.process_images = original

    job = queue.submit(run)
    assert job.wait(300) and job.status == "interrupted"
    assert made == [1, 2]                                     # cells 3 and 4 never started
    assert len(job.result.images) == 1 + 2                   # the grid (with two empty cells) and the two images
    grid = job.result.images[0]
    assert grid.width == 4 * 64 and grid.height > 64          # four columns under a header row
    top = grid.height - 64
    assert grid.crop((2 * 64, top, 4 * 64, grid.height)).getextrema() == ((255, 255),) * 3   # empty cells
    assert grid.crop((0, top, 64, grid.height)).tobytes() == job.result.images[1].tobytes()
    queue.shutdown()
