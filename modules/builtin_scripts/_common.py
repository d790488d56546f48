"""Helpers shared by the built-in scripts (not a Script file: the loader skips names starting with '_').

- `copy_processing`: a copy of p for one cell/line whose mutable fields are its own.
- `combine`: several Processed results into one, grid(s) first (A1111's shape).
- `infotext_with`: an infotext with extra `key: value` pairs (Script, X Type, ...).
- `CheckpointSwitcher`: switch checkpoints inside the running job and restore the original.
"""
from __future__ import annotations

import copy
import dataclasses

from modules import infotext as infotext_module


def copy_processing(p, **changes):
    """A shallow copy of p with its own dicts/lists (extra params, overrides, styles), so cells do not leak."""
    pc = copy.copy(p)
    pc.extra_generation_params = dict(p.extra_generation_params or {})
    pc.override_settings = dict(p.override_settings or {})
    pc.styles = list(p.styles or [])
    for key, value in changes.items():
        setattr(pc, key, value)
    return pc


def infotext_with(text: str | None, extra: dict) -> str | None:
    """`text` with `extra` params added to its parameters line (before "Version", which stays last)."""
    if not text:
        return text
    pairs = ", ".join(f"{k}: {infotext_module.quote(v)}" for k, v in extra.items() if v is not None)
    if not pairs:
        return text
    head, _, last = text.rpartition("\n")
    marker = ", Version: "
    if marker in last:
        at = last.rindex(marker)
        last = f"{last[:at]}, {pairs}{last[at:]}"
    elif last.startswith("Version: "):
        last = f"{pairs}, {last}"
    else:
        last = f"{last}, {pairs}"
    return f"{head}\n{last}" if head else last


def combine(results: list, grids: list | None = None, grid_infotexts: list | None = None, keep_images: bool = True):
    """One Processed from several: `grids` first (index_of_first_image counts them), then every image.

    Seeds and prompts are those of the images (A1111's combined result). At
    least one result must exist.
    """
    first = results[0]
    images, infotexts, seeds, subseeds, prompts, negatives, warnings = [], [], [], [], [], [], []
    for r in results:
        images.extend(r.images[r.index_of_first_image:])
        infotexts.extend(r.infotexts[r.index_of_first_image:])
        seeds.extend(r.all_seeds)
        subseeds.extend(r.all_subseeds)
        prompts.extend(r.all_prompts)
        negatives.extend(r.all_negative_prompts)
        warnings.extend(w for w in r.warnings if w not in warnings)
    grids = list(grids or [])
    texts = list(grid_infotexts or [])
    texts += [texts[0] if texts else first.info] * (len(grids) - len(texts))
    out_images = grids + (images if keep_images else [])
    out_texts = texts + (infotexts if keep_images else [])
    return dataclasses.replace(
        first, images=out_images, infotexts=out_texts, all_seeds=seeds, all_subseeds=subseeds, all_prompts=prompts,
        all_negative_prompts=negatives, index_of_first_image=len(grids),
        interrupted=any(r.interrupted for r in results), warnings=warnings,
        saved_paths=[path for r in results for path in r.saved_paths], latents=[],
    )


def empty_processed(p, state):
    """The result of a script interrupted before its first image (the page then says "Interrupted")."""
    from modules import processing

    prompt = p.prompt if isinstance(p.prompt, str) else ""
    negative = p.negative_prompt if isinstance(p.negative_prompt, str) else ""
    return processing.Processed(
        images=[], infotexts=[], seed=p.seed, all_seeds=[], subseed=p.subseed, all_subseeds=[], prompt=prompt,
        all_prompts=[], negative_prompt=negative, all_negative_prompts=[], width=p.width, height=p.height,
        sampler_name=str(p.sampler_name), cfg_scale=p.cfg_scale, steps=p.steps, batch_size=p.batch_size,
        sd_model_name="", sd_model_hash="", clip_skip=1, job_timestamp=state.job_timestamp, interrupted=True)


class CheckpointSwitcher:
    """Loads checkpoints inside the running queue job (the worker thread owns the model) and restores the first.

    Generation already runs in a job, so a nested job would wait for itself;
    the model manager's `load_now` is what queue jobs use (the API's
    override_settings["sd_model_checkpoint"] does the same).
    """

    def __init__(self):
        from modules import shared

        self.shared = shared
        self.original = None
        self.switched = False

    def find(self, name: str):
        models = self.shared.models
        if models is None:
            raise ValueError("checkpoints: no model manager is running (start Easel to switch checkpoints)")
        info = models.find(str(name).strip())
        if info is None:
            raise ValueError(f"unknown checkpoint {name!r}; available: {', '.join(models.checkpoint_titles())}")
        return info

    def check_in_job(self, p) -> None:
        from modules import jobs

        if getattr(jobs._local, "job", None) is None:
            raise ValueError("switching checkpoints must happen inside a queue job (generate from the page or API)")
        if p.sd_model is not None and p.sd_model is not self.shared.models.current:
            raise ValueError("this job is bound to a fixed model object (p.sd_model); it cannot switch checkpoints")

    def load(self, info) -> None:
        models = self.shared.models
        if models.current is not None and models.current.checkpoint.filename == info.filename:
            return
        if self.original is None and models.current is not None:
            self.original = models.current.checkpoint
        self.switched = True
        models.load_now(info)

    def restore(self) -> None:
        models = self.shared.models
        if self.switched and self.original is not None:
            current = models.current.checkpoint.filename if models.current is not None else None
            if current != self.original.filename:
                models.load_now(self.original)
        self.switched = False
