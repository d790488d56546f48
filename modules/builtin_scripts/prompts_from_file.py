"""A1111's "Prompts from file or textbox": one job per line.

A line is a prompt, or A1111's options read with shell quoting:
`--prompt "a cat" --negative_prompt "blurry" --seed 1 --steps 20 --cfg_scale 7 --sampler_name "Euler a"
--width 512 --height 512 --batch_size 1 --n_iter 1` (the full list is PROMPT_TAGS). Every line is parsed
and checked before the first image, and an unknown option or bad value fails the job naming the line.
The prompt of a line goes before ("start") or after ("end") the tab's prompt when that is not empty.
"""
from __future__ import annotations

import shlex

import gradio as gr

# modules.processing is imported where it is used: it loads torch, and this file is
# imported while the page is built (tests/test_startup_imports.py)
from modules import scripts
from modules.builtin_scripts._common import CheckpointSwitcher, combine, copy_processing, empty_processed

TITLE = "Prompts from file or textbox"


def _string(value: str) -> str:
    return value


def _int(value: str) -> int:
    return int(value)


def _float(value: str) -> float:
    return float(value)


def _bool(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("true", "1", "yes", "on"):
        return True
    if lowered in ("false", "0", "no", "off"):
        return False
    raise ValueError(f"{value!r} is not true or false")


def _styles(value: str) -> list[str]:
    return [s.strip() for s in value.split(",") if s.strip()]


# A1111's option names and how their values are read
PROMPT_TAGS = {
    "sd_model": _string, "outpath_samples": _string, "outpath_grids": _string, "prompt_for_display": _string,
    "prompt": _string, "negative_prompt": _string, "styles": _styles, "seed": _int, "subseed_strength": _float,
    "subseed": _int, "seed_resize_from_h": _int, "seed_resize_from_w": _int, "sampler_index": _string,
    "sampler_name": _string, "scheduler": _string, "batch_size": _int, "n_iter": _int, "steps": _int,
    "cfg_scale": _float, "width": _int, "height": _int, "restore_faces": _bool, "tiling": _bool,
    "do_not_save_samples": _bool, "do_not_save_grid": _bool, "denoising_strength": _float,
}
_PROMPT_LIKE = ("prompt", "negative_prompt")


def parse_line(line: str) -> dict:
    """One line -> {option: value}; a line not starting with "--" is {"prompt": line} (A1111 reads such a
    line as a prompt too, since its first word is no option). ValueError names the problem."""
    line = line.strip()
    if not line.startswith("--"):
        return {"prompt": line}
    try:
        words = shlex.split(line)
    except ValueError as exc:
        raise ValueError(f"cannot split the line into options ({exc}); check its quotes") from None
    result, pos = {}, 0
    while pos < len(words):
        word = words[pos]
        if not word.startswith("--"):
            raise ValueError(f"expected an option starting with '--', got {word!r}")
        tag = word[2:]
        if tag not in PROMPT_TAGS:
            raise ValueError(f"unknown option {word!r}; known: {', '.join('--' + t for t in PROMPT_TAGS)}")
        if pos + 1 >= len(words):
            raise ValueError(f"option {word!r} has no value")
        pos += 1
        if tag in _PROMPT_LIKE:
            # A1111: a prompt runs up to the next option, so unquoted words are joined with spaces
            value = [words[pos]]
            pos += 1
            while pos < len(words) and not words[pos].startswith("--"):
                value.append(words[pos])
                pos += 1
            result[tag] = " ".join(value)
            continue
        try:
            result[tag] = PROMPT_TAGS[tag](words[pos])
        except ValueError as exc:
            raise ValueError(f"option {word!r}: {exc}") from None
        pos += 1
    if "sampler_index" in result:
        result.setdefault("sampler_name", result.pop("sampler_index"))
    result.pop("prompt_for_display", None)
    return result


def parse_lines(text: str) -> list[dict]:
    """Every non-empty line parsed; ValueError names the line number and the line."""
    jobs = []
    for number, line in enumerate(str(text or "").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            jobs.append(parse_line(line))
        except ValueError as exc:
            raise ValueError(f"{TITLE}, line {number} ({line.strip()[:80]!r}): {exc}") from None
    return jobs


def _load_file(path):
    if not path:
        return gr.skip()
    with open(path, "rb") as f:
        data = f.read()
    return data.decode("utf-8", errors="replace")


class Script(scripts.Script):
    def title(self):
        return TITLE

    def ui(self, is_img2img):
        with gr.Row():
            checkbox_iterate = gr.Checkbox(label="Iterate seed every line", value=False,
                                           elem_id=self.elem_id("checkbox_iterate"))
            checkbox_iterate_batch = gr.Checkbox(label="Use same random seed for all lines", value=False,
                                                 elem_id=self.elem_id("checkbox_iterate_batch"))
            prompt_position = gr.Radio(["start", "end"], label="Insert prompts at the", value="start",
                                       elem_id=self.elem_id("prompt_position"))
        prompt_txt = gr.Textbox(label="List of prompt inputs", lines=3, elem_id=self.elem_id("prompt_txt"),
                                placeholder='one prompt per line, or --prompt "..." --seed 1 --steps 20 ...')
        upload = gr.File(label="Upload prompt inputs", file_types=[".txt"], type="filepath",
                         elem_id=self.elem_id("file"))
        upload.upload(_load_file, inputs=[upload], outputs=[prompt_txt], show_progress="hidden")
        return [checkbox_iterate, checkbox_iterate_batch, prompt_position, prompt_txt]

    def run(self, p, checkbox_iterate=False, checkbox_iterate_batch=False, prompt_position="start", prompt_txt=""):
        from modules import processing
        if prompt_position not in ("start", "end"):
            raise ValueError(f"{TITLE}: prompt_position must be 'start' or 'end', got {prompt_position!r}")
        jobs = parse_lines(prompt_txt)
        if not jobs:
            raise ValueError(f"{TITLE}: no prompts given (one per line)")
        if (checkbox_iterate or checkbox_iterate_batch) and p.seed == -1:
            processing.fix_seed(p)     # one random seed shared (or counted up) by the lines
        p.do_not_save_grid = True

        switcher = None
        lines = [self._line_processing(p, args, prompt_position) for args in jobs]
        if any(pc.pff_checkpoint for pc in lines):
            switcher = CheckpointSwitcher()
            try:
                switcher.check_in_job(p)
                for pc in lines:
                    if pc.pff_checkpoint:
                        pc.pff_checkpoint = switcher.find(pc.pff_checkpoint)
                        pc.sd_model = None
            except ValueError as exc:
                raise ValueError(f"{TITLE}: --sd_model: {exc}") from None
        family = p.sd_model.family if p.sd_model is not None else _current_family()
        for number, pc in enumerate(lines, start=1):
            try:
                processing.validate(pc, family)
            except ValueError as exc:
                raise ValueError(f"{TITLE}, prompt {number}: {exc}") from None

        from modules import jobs as job_queue

        state = job_queue.current_state()
        results, seed = [], p.seed
        try:
            for number, (pc, args) in enumerate(zip(lines, jobs), start=1):
                if state.interrupted:
                    break
                if "seed" not in args and isinstance(seed, int):
                    pc.seed = seed
                if pc.pff_checkpoint:
                    switcher.load(pc.pff_checkpoint)
                state.textinfo = f"{TITLE}: line {number} of {len(lines)}"
                results.append(processing.process_images(pc))
                if checkbox_iterate and isinstance(seed, int) and seed >= 0:
                    seed += pc.batch_size * pc.n_iter
        finally:
            if switcher is not None:
                switcher.restore()
        if not results:
            return empty_processed(p, state)
        return combine(results)

    @staticmethod
    def _line_processing(p, args: dict, position: str):
        pc = copy_processing(p)
        pc.pff_checkpoint = None
        for key, value in args.items():
            if key == "sd_model":
                pc.pff_checkpoint = value
            elif key == "styles":
                pc.styles = list(value)
            else:
                setattr(pc, key, value)
        for key in ("prompt", "negative_prompt"):
            own, base = args.get(key), getattr(p, key)
            if own and base and isinstance(base, str):
                setattr(pc, key, f"{own} {base}" if position == "start" else f"{base} {own}")
        return pc


def _current_family():
    from modules import shared

    return shared.models.current_family() if shared.models is not None else None
