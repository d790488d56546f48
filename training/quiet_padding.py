"""Quiet padding: the text states after the end-of-text token say nothing about the caption.

Why: SD1-style prompts are padded to 77 tokens, and the U-Net attends to the
padding's states too. The text encoder is causal, so each padding state sums up
the whole caption, colours included. Measured on the demo models
(docs/demo-model.md, run demo11): swapping only the padding states for those
of the caption without its colour words raised the two-object colour from 13
to 22 of 36 images. A leak through the padding reaches every pixel, so
"a green star and a black cross" paints both shapes one colour.

The loss pulls each padding state towards the same position's state for the
empty caption (held fixed for the step), so the U-Net can only learn the
colours from the words' own tokens, where token grounding places them. The
other target, untried in a full run, is the padding of the caption itself
without its colour words (`without_colours`, lined up by `align_padding`): it
takes out the colours and leaves the shapes in the padding. The end-of-text
token itself is left free: it is the pooled state the caption heads read.
Training only: the exported model and how Easel encodes prompts are unchanged.

Measured (run demo12: weight 0.02, with token grounding 0.02 on the objects' and the
background's words; docs/demo-model.md): the padding stayed quiet (loss 0.0002 at the
end, against 0.35 for demo9s1's padding), colour rose from 88% to 97% and
two-object colour from 22% to 86%, but shape fell from 72% to 36%. Off by default;
runs demo16 and demo21 (shipped) use weight 0.02 with the colourless target.
"""
from __future__ import annotations

import re

import torch

from training.shapes_dataset import BACKGROUND_COLOURS

_COLOUR_WORDS = re.compile(r"\b(?:" + "|".join(BACKGROUND_COLOURS) + r")\b\s*")


def without_colours(caption: str) -> str:
    """The caption with its colour words taken out: "a red star on a blue background" ->
    "a star on a background". Its padding is the colourless target (align_padding)."""
    return _COLOUR_WORDS.sub("", caption).strip()


def padding_mask(ids: torch.Tensor, eot_id: int) -> torch.Tensor:
    """(batch, tokens) bool: True after each row's first end-of-text token."""
    is_eot = ids == eot_id
    first = torch.where(is_eot.any(1), is_eot.int().argmax(1), torch.full_like(ids[:, 0], ids.shape[1]))
    return torch.arange(ids.shape[1], device=ids.device)[None, :] > first[:, None]


def padding_loss(states: torch.Tensor, ids: torch.Tensor, target_states: torch.Tensor, eot_id: int) -> torch.Tensor:
    """Mean squared distance of the padding states from the target's at the same positions.

    states: (batch, tokens, width) text states of the captions; ids: their token ids;
    target_states: the empty caption's states, (tokens, width) or (1, tokens, width), or one
    row per caption (batch, tokens, width) lined up by align_padding. Held fixed (detached)."""
    mask = padding_mask(ids, eot_id)
    if not mask.any():
        return states.sum() * 0.0
    target = target_states.reshape(-1, *states.shape[1:]).float().detach()
    gap = ((states.float() - target) ** 2).mean(-1)
    return gap[mask].mean()


def align_padding(target_states: torch.Tensor, target_ids: torch.Tensor, ids: torch.Tensor,
                  eot_id: int) -> torch.Tensor:
    """target_states shifted row by row so that their padding starts where the captions' does:
    the k-th padding state after each caption's end-of-text faces the k-th after the target's.
    Positions before the padding are left as they were (padding_loss ignores them).
    The target caption must be no longer than the caption (a caption less some words is)."""
    out = target_states.clone()
    first = padding_mask(ids, eot_id).int().argmax(1)               # first padding position
    target_first = padding_mask(target_ids, eot_id).int().argmax(1)
    for b in range(ids.shape[0]):
        start, target_start = int(first[b]), int(target_first[b])
        if target_start > start:
            raise ValueError("the target caption is longer than the caption it stands for")
        if start:   # a row with no padding (start 0 from argmax of all False) has nothing to align
            n = ids.shape[1] - start
            out[b, start:] = target_states[b, target_start:target_start + n]
    return out
