"""Textual-inversion embeddings: load them from the embeddings folders, match them to a model.

A user writes an embedding's file name (without extension) as a word in the
prompt; text_encoding replaces that word's tokens by the embedding's vectors
at the token-embedding stage of the text encoder (the tokenizer is never
changed). File formats (A1111's):

- `.pt`/`.bin`: a dict with `string_to_param` {"*": (n, dim)}, or a
  one-entry {token: (n, dim) | (dim,)} dict (diffusers' learned_embeds).
  Read with torch.load(weights_only=True): a pickle that needs code to load
  is refused, never run.
- `.safetensors`: `emb_params` (n, dim), or SDXL's `clip_l` (n, 768) and
  `clip_g` (n, 1280).

An embedding that does not fit the loaded model (wrong width, SD1 vs SDXL,
more than 75 vectors) is listed in `skipped` with the reason.
"""
from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

log = logging.getLogger(__name__)

EXTENSIONS = (".pt", ".bin", ".safetensors")
MAX_VECTORS = 75          # an embedding never splits across 75-token chunks
SINGLE = "default"        # key of the vectors of a one-encoder (SD1/SD2) embedding
SDXL_KEYS = ("clip_l", "clip_g")  # vectors for SDXL's first and second text encoder


@dataclass
class Embedding:
    name: str
    filename: str
    vectors: dict[str, torch.Tensor]          # SINGLE or "clip_l"/"clip_g" -> (n, dim), fp32
    _hash: str | None = field(default=None, repr=False)

    @property
    def vector_count(self) -> int:
        return next(iter(self.vectors.values())).shape[0]

    def sha256(self) -> str:
        if self._hash is None:
            self._hash = file_sha256(self.filename)
        return self._hash

    def shorthash(self) -> str:
        """First 12 hex digits of the file's sha256: what A1111 writes into `TI hashes`."""
        return self.sha256()[:12]


def file_sha256(path: str, skip_bytes: int = 0) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        f.seek(skip_bytes)
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _as_matrix(tensor, what: str) -> torch.Tensor:
    if not isinstance(tensor, torch.Tensor):
        raise ValueError(f"{what} is not a tensor")
    tensor = tensor.detach().float()
    if tensor.dim() == 1:
        tensor = tensor[None]
    if tensor.dim() != 2 or tensor.shape[0] == 0:
        raise ValueError(f"{what} has shape {tuple(tensor.shape)}, expected (vectors, width)")
    if not torch.isfinite(tensor).all():
        raise ValueError(f"{what} holds NaN or infinite values")
    return tensor


def read_embedding_file(path: str) -> dict[str, torch.Tensor]:
    """The vectors of one file; ValueError saying why a file is not a usable embedding."""
    suffix = Path(path).suffix.lower()
    if suffix == ".safetensors":
        from safetensors.torch import load_file

        data = load_file(path)
        if all(k in data for k in SDXL_KEYS):
            vectors = {k: _as_matrix(data[k], k) for k in SDXL_KEYS}
            if vectors["clip_l"].shape[0] != vectors["clip_g"].shape[0]:
                raise ValueError("clip_l and clip_g have different vector counts")
            return vectors
        if "emb_params" in data:
            return {SINGLE: _as_matrix(data["emb_params"], "emb_params")}
        raise ValueError(f"no emb_params or clip_l/clip_g tensors (keys: {', '.join(sorted(data)[:5])})")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # an unpickler refusing a class, or a corrupt file
        raise ValueError(f"refused: not a plain tensor file ({type(error).__name__}: {str(error).splitlines()[0][:120]})")
    if isinstance(data, dict) and "string_to_param" in data:
        params = data["string_to_param"]
        if not isinstance(params, dict) or not params:
            raise ValueError("string_to_param is empty")
        return {SINGLE: _as_matrix(next(iter(params.values())), "string_to_param")}
    if isinstance(data, dict) and len(data) == 1:
        key, value = next(iter(data.items()))
        return {SINGLE: _as_matrix(value, f"tensor {key!r}")}
    raise ValueError("no string_to_param dict and not a one-tensor dict")


def encoder_widths(model) -> list[int]:
    return [int(enc.config.hidden_size) for enc in model.text_encoders]


def encoder_keys(model) -> list[str]:
    """Which vectors each text encoder of `model` takes."""
    if model.family.conditioning == "sdxl":
        return list(SDXL_KEYS)
    return [SINGLE] * len(model.text_encoders)


def incompatibility(embedding: Embedding, model) -> str | None:
    """Why `embedding` cannot be used with `model`, or None."""
    if embedding.vector_count > MAX_VECTORS:
        return f"{embedding.vector_count} vectors, more than the {MAX_VECTORS} of one chunk"
    for key, width in zip(encoder_keys(model), encoder_widths(model)):
        vectors = embedding.vectors.get(key)
        if vectors is None:
            kind = "SDXL (clip_l/clip_g)" if SINGLE not in embedding.vectors else "SD1/SD2 (one encoder)"
            return f"made for {kind} models, this model is {model.family.id}"
        if vectors.shape[1] != width:
            return f"vector width {vectors.shape[1]}, the model's text encoder takes {width}"
    return None


class EmbeddingDatabase:
    """The embeddings in some folders, re-read when the folders' files change."""

    def __init__(self, dirs):
        self.dirs = [Path(d) for d in dirs]
        self.embeddings: dict[str, Embedding] = {}
        self.unreadable: dict[str, str] = {}     # name -> why the file could not be read
        self._signature = None

    def _files(self) -> list[tuple[str, Path]]:
        found = []
        for folder in self.dirs:
            if not folder.is_dir():
                continue
            for root, _, names in os.walk(folder, followlinks=True):
                for name in sorted(names):
                    if name.lower().endswith(EXTENSIONS):
                        found.append((Path(name).stem, Path(root) / name))
        return found

    def load(self, force: bool = False) -> None:
        files = self._files()
        signature = tuple((str(p), p.stat().st_mtime_ns, p.stat().st_size) for _, p in files)
        if signature == self._signature and not force:
            return
        embeddings, unreadable = {}, {}
        for name, path in files:
            if name in embeddings or name in unreadable:
                continue  # the first file of a name wins, as the folder order says
            try:
                embeddings[name] = Embedding(name, str(path), read_embedding_file(str(path)))
            except (ValueError, OSError, RuntimeError) as error:
                unreadable[name] = str(error)
                log.warning("embedding %s skipped: %s", path, error)
        self.embeddings, self.unreadable, self._signature = embeddings, unreadable, signature

    def for_model(self, model) -> "ModelEmbeddings":
        self.load()
        usable, skipped = {}, dict(self.unreadable)
        for name, embedding in self.embeddings.items():
            reason = incompatibility(embedding, model)
            if reason is None:
                usable[name] = embedding
            else:
                skipped[name] = reason
        return ModelEmbeddings(usable, skipped, encoder_keys(model))


@dataclass
class ModelEmbeddings:
    """The embeddings usable with one model, and those skipped with the reason."""
    usable: dict[str, Embedding]
    skipped: dict[str, str]
    keys: list[str]                       # vectors key per text encoder
    _lookups: dict = field(default_factory=dict, repr=False)

    def lookup(self, tokenizer, encoder_index: int) -> "EmbeddingLookup":
        cache_key = (id(tokenizer), encoder_index)
        if cache_key not in self._lookups:
            self._lookups[cache_key] = EmbeddingLookup(tokenizer, self.usable, self.keys[encoder_index])
        return self._lookups[cache_key]


class EmbeddingLookup:
    """Finds embedding names in a token sequence (names are matched as token sequences, longest first)."""

    def __init__(self, tokenizer, embeddings: dict[str, Embedding], key: str):
        self.key = key
        self._by_first: dict[int, list[tuple[tuple[int, ...], Embedding]]] = {}
        for name, embedding in embeddings.items():
            ids = tuple(tokenizer(name, add_special_tokens=False)["input_ids"])
            if ids:
                self._by_first.setdefault(ids[0], []).append((ids, embedding))
        for candidates in self._by_first.values():
            candidates.sort(key=lambda c: -len(c[0]))

    def match(self, tokens: list[int], position: int) -> tuple[int, Embedding] | None:
        """(number of tokens the name takes, embedding) for a name starting at `position`, else None."""
        for ids, embedding in self._by_first.get(tokens[position], ()):
            if tuple(tokens[position:position + len(ids)]) == ids:
                return len(ids), embedding
        return None

    def vectors(self, embedding: Embedding) -> torch.Tensor:
        return embedding.vectors[self.key]


_databases: dict[tuple, EmbeddingDatabase] = {}


def database(dirs=None) -> EmbeddingDatabase:
    """The shared database of `dirs` (default: the app's embeddings folders)."""
    if dirs is None:
        from modules import shared

        dirs = shared.paths.embeddings_dirs if shared.paths is not None else []
    key = tuple(str(d) for d in dirs)
    if key not in _databases:
        _databases[key] = EmbeddingDatabase(dirs)
    return _databases[key]
