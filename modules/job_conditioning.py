"""A job's prompts -> per-step conditioning, with LoRA and textual-inversion embeddings.

process_images opens one JobConditioning per job and closes it in a
`finally` (the LoRA weights are restored then). Per batch, `batch(prompts,
negatives)`:
1. removes `<lora:...>` tags (extra_networks) and merges the batch's LoRA
   set into the model when it differs from the one merged (lora);
2. returns a prompt_schedules.BatchConditioning over the cleaned texts;
   each distinct text is encoded once per job (and again only after the
   text encoder's weights changed), with the model's compatible embeddings.
Problems with the prompt's references (unknown LoRA or embedding names,
unsupported tags) never fail the job: they are collected in `warnings`.
"""
from __future__ import annotations

import logging
import re
from pathlib import Path

import torch

from modules import extra_networks, lora, prompt_schedules, textual_inversion

log = logging.getLogger(__name__)


class JobConditioning:
    def __init__(self, model, steps: int, width: int, height: int, clip_skip: int = 1, emphasis: str = "Original",
                 lora_dir=None, embedding_dirs=None):
        self.model = model
        self.steps = steps
        self.clip_skip = clip_skip
        self.emphasis = emphasis
        self.warnings: list[str] = []
        self._lora_dir = lora_dir
        self._networks = lora.AppliedNetworks(model)
        self._requests: list | None = None
        self._cache: dict = {}
        self._time_ids = (torch.tensor([[height, width, 0, 0, height, width]], dtype=torch.float32)
                          if model.family.conditioning == "sdxl" else None)
        self.embeddings = self._load_embeddings(embedding_dirs)
        self._encode = prompt_schedules.text_cache_encoder(model, clip_skip, emphasis, self._cache, self.embeddings)

    def _load_embeddings(self, dirs):
        try:
            database = textual_inversion.database(dirs)
            return database.for_model(self.model)
        except (OSError, ValueError) as error:
            self._warn(f"textual-inversion embeddings could not be read: {error}")
            return None

    def _warn(self, message: str) -> None:
        if message not in self.warnings:
            log.warning("%s", message)
            self.warnings.append(message)

    def _available_loras(self) -> dict:
        try:
            folder = self._lora_dir if self._lora_dir is not None else lora.lora_dir()
        except ValueError as error:
            self._warn(str(error))
            return {}
        return lora.list_loras(Path(folder))

    def batch(self, prompts: list[str], negatives: list[str]) -> prompt_schedules.BatchConditioning:
        texts, data = extra_networks.parse_prompts(prompts)
        negative_texts, negative_data = extra_networks.parse_prompts(negatives)
        data = extra_networks.merge(data, negative_data)
        for message in extra_networks.unknown_type_warnings(data):
            self._warn(message)
        requests, messages = lora.parse_requests(data.get("lora", []))
        for message in messages:
            self._warn(message)
        if requests != self._requests:
            te_was_changed = self._networks.text_encoder_changed
            for message in self._networks.apply(requests, self._available_loras() if requests else {}):
                self._warn(message)
            self._requests = requests
            if te_was_changed or self._networks.text_encoder_changed:
                self._cache.clear()  # texts encoded with other text-encoder weights
        self._warn_skipped_embeddings(texts + negative_texts)
        return prompt_schedules.BatchConditioning(self._encode, texts, negative_texts, self.steps, self._time_ids)

    def _warn_skipped_embeddings(self, texts: list[str]) -> None:
        """A word naming an embedding that does not fit this model stays a plain word; say why."""
        for name, reason in self.skipped_embeddings().items():
            word = re.compile(rf"(?<![\w-]){re.escape(name)}(?![\w-])")
            if any(word.search(t) for t in texts):
                self._warn(f"embedding {name!r} was not used: {reason}")

    def used_embeddings(self) -> list:
        names: list[str] = []
        for conditioning in self._cache.values():
            names.extend(n for n in conditioning.embeddings_used if n not in names)
        usable = self.embeddings.usable if self.embeddings is not None else {}
        return [usable[n] for n in names if n in usable]

    def infotext_params(self) -> dict:
        """Lora hashes, TI hashes and a non-default Emphasis for the infotext (None values are left out)."""
        used = self.used_embeddings()
        return {
            "Lora hashes": self._networks.infotext_hashes(),
            "TI hashes": ", ".join(f"{e.name}: {e.shorthash()}" for e in used) or None,
            "Emphasis": self.emphasis if self.emphasis != "Original" else None,
        }

    def skipped_embeddings(self) -> dict[str, str]:
        return dict(self.embeddings.skipped) if self.embeddings is not None else {}

    def close(self) -> None:
        """Restore the model's weights (call in a `finally`)."""
        self._networks.restore()
        self._requests = None
