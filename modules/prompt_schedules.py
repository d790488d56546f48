"""Per-step conditioning for a batch: AND sub-prompts, prompt editing and alternation.

A batch's prompts are split at AND (prompt_parser.get_multicond_prompt_list),
each sub-prompt and each negative prompt gets its editing schedule
(prompt_parser.get_learned_conditioning_prompt_schedules), and `at(step)`
returns the sampling.StepConditioning for a 0-based sampling step: A1111
uses a schedule entry while step <= its end step. Every distinct text is
encoded once (through the caller's `encode`, which caches across batches),
and the tensors for a combination of texts are built once.
"""
from __future__ import annotations

from typing import Callable

import torch

from modules import prompt_parser, text_encoding
from modules.sampling import StepConditioning
from modules.text_encoding import Conditioning


def pad_to_chunks(c: Conditioning, chunks: int) -> torch.Tensor:
    """c.embeds with the empty prompt's chunk appended until it has `chunks` chunks (A1111's padding rule)."""
    missing = chunks - c.chunks
    if missing <= 0:
        return c.embeds
    if c.empty_chunk is None:
        raise ValueError("conditioning: cannot pad without its empty_chunk (encode it with encode_prompts)")
    empty = c.empty_chunk.to(c.embeds.dtype).expand(c.embeds.shape[0], -1, -1)
    return torch.cat([c.embeds] + [empty] * missing, dim=1)


class BatchConditioning:
    """`at(step) -> StepConditioning` for one batch of prompts and negative prompts."""

    def __init__(self, encode: Callable[[str], Conditioning], prompts: list[str], negatives: list[str], steps: int,
                 time_ids: torch.Tensor | None = None):
        """`encode(text)` -> Conditioning of one text; `time_ids` (1, 6) for SDXL models, else None."""
        if len(prompts) != len(negatives):
            raise ValueError(f"prompts and negative prompts: need one negative per prompt, got {len(prompts)} and {len(negatives)}")
        self._encode = encode
        self._time_ids = time_ids
        res_indexes, flat, _ = prompt_parser.get_multicond_prompt_list(prompts)
        flat_schedules = prompt_parser.get_learned_conditioning_prompt_schedules(flat, steps)
        # per image: [(schedule, weight), ...] for its sub-prompts; and the negative's schedule
        self._subprompts = [[(flat_schedules[i], w) for i, w in entry] for entry in res_indexes]
        self._negatives = prompt_parser.get_learned_conditioning_prompt_schedules(negatives, steps)
        self._built: dict[tuple, StepConditioning] = {}

    @property
    def sub_prompt_count(self) -> int:
        return sum(len(s) for s in self._subprompts)

    def texts_at(self, step: int) -> tuple[tuple[str, ...], tuple[tuple[str, ...], ...]]:
        """(negative text per image, sub-prompt texts per image) at `step`."""
        negatives = tuple(prompt_parser.text_at_step(s, step) for s in self._negatives)
        positives = tuple(tuple(prompt_parser.text_at_step(s, step) for s, _ in subs) for subs in self._subprompts)
        return negatives, positives

    def at(self, step: int) -> StepConditioning:
        key = self.texts_at(step)
        if key not in self._built:
            self._built[key] = self._build(*key)
        return self._built[key]

    __call__ = at

    def _build(self, negatives, positives) -> StepConditioning:
        uncond = [self._encode(t) for t in negatives]
        conds, weights = [], []
        for texts, subs in zip(positives, self._subprompts):
            pairs = []
            for text, (_, weight) in zip(texts, subs):
                pairs.append((len(conds), weight))
                conds.append(self._encode(text))
            weights.append(pairs)
        everything = uncond + conds
        chunks = max(c.chunks for c in everything)
        uncond_embeds = torch.cat([pad_to_chunks(c, chunks) for c in uncond])
        cond_embeds = torch.cat([pad_to_chunks(c, chunks) for c in conds])
        added = None
        if self._time_ids is not None:
            if any(c.pooled is None for c in everything):
                raise ValueError("conditioning: SDXL time ids given but the text encoding has no pooled output")
            added = {"text_embeds": torch.cat([c.pooled for c in everything]),
                     "time_ids": self._time_ids.reshape(1, -1).repeat(len(everything), 1)}
        return StepConditioning(uncond_embeds, cond_embeds, weights, added)


def text_cache_encoder(model, clip_skip: int, emphasis: str, cache: dict, embeddings=None):
    """encode(text) -> Conditioning of one text on `model`, memoised in `cache` (the caller clears it when the
    text encoder's weights change, e.g. when LoRA networks change)."""
    def encode(text: str) -> Conditioning:
        key = (text, clip_skip, emphasis)
        if key not in cache:
            cache[key] = text_encoding.encode_prompts(model, [text], clip_skip=clip_skip, emphasis=emphasis,
                                                      embeddings=embeddings)
        return cache[key]

    return encode
