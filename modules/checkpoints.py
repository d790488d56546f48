"""Finding checkpoints on disk and their hashes (no torch: the page lists them at start-up).

`modules.sd_models` re-exports these names; loading lives there.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
CHECKPOINT_EXTENSIONS = (".safetensors", ".ckpt")

# ---------------------------------------------------------------- listing and hashing

hash_file_reads = 0  # how many files were actually read to hash them (tests check the cache with it)
_cache_lock = threading.Lock()


def default_cache_path() -> str:
    """Where hashes go when the caller names no cache file: cache.json in the repository, which is
    the default data dir. The app should pass `cache_path=paths.cache_file` (it knows --data-dir)."""
    return os.path.join(os.fspath(ROOT), "cache.json")


def _hash_target(filename: str) -> str:
    """The file whose sha256 names a checkpoint. A diffusers folder has no single file, so the
    U-Net weights stand for it (the largest part, and what a fine-tune changes)."""
    if not os.path.isdir(filename):
        return filename
    for name in ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin",
                 "diffusion_pytorch_model.fp16.safetensors"):
        candidate = os.path.join(filename, "unet", name)
        if os.path.isfile(candidate):
            return candidate
    raise FileNotFoundError(f"diffusers folder {filename} has no unet/diffusion_pytorch_model.safetensors or .bin")


def _read_cache(cache_path: str) -> dict:
    try:
        with open(cache_path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        return {}
    except json.JSONDecodeError:
        log.warning("hash cache %s is not valid JSON; starting a new one", cache_path)
        return {}


def cached_sha256(filename: str, cache_path: str | None = None, compute: bool = True) -> str | None:
    """Full sha256 hex of a file (or of a diffusers folder's U-Net weights), cached on disk."""
    global hash_file_reads
    cache_path = cache_path or default_cache_path()
    target = os.path.abspath(_hash_target(filename))
    stat = os.stat(target)
    with _cache_lock:
        entry = _read_cache(cache_path).get("hashes-sha256", {}).get(target)
    if entry and entry.get("mtime") == stat.st_mtime and entry.get("size") == stat.st_size:
        return entry["sha256"]
    if not compute:
        return None
    digest = hashlib.sha256()
    with open(target, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    hash_file_reads += 1
    value = digest.hexdigest()
    with _cache_lock:  # read again: other sections (and other files' hashes) may have changed meanwhile
        cache = _read_cache(cache_path)
        cache.setdefault("hashes-sha256", {})[target] = {"mtime": stat.st_mtime, "size": stat.st_size, "sha256": value}
        os.makedirs(os.path.dirname(os.path.abspath(cache_path)), exist_ok=True)
        tmp = f"{cache_path}.{os.getpid()}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(cache, f, indent=1)
        os.replace(tmp, cache_path)
    return value


@dataclass
class CheckpointInfo:
    filename: str                 # absolute path (file or diffusers folder)
    name: str                     # relative to its checkpoint dir, "/"-separated, with extension
    cache_path: str | None = None
    model_name: str = ""
    title: str = ""
    _sha256: str | None = field(default=None, repr=False)

    def __post_init__(self):
        self.filename = os.path.abspath(self.filename)
        stem, ext = os.path.splitext(self.name)
        self.model_name = stem if ext.lower() in CHECKPOINT_EXTENSIONS else self.name
        self._sha256 = cached_sha256(self.filename, self.cache_path, compute=False)
        self.title = self._make_title()

    def _make_title(self) -> str:
        return f"{self.name} [{self._sha256[:10]}]" if self._sha256 else self.name

    @property
    def is_diffusers(self) -> bool:
        return os.path.isdir(self.filename)

    def sha256(self) -> str:
        if self._sha256 is None:
            self._sha256 = cached_sha256(self.filename, self.cache_path)
            self.title = self._make_title()
        return self._sha256

    def shorthash(self) -> str:
        return self.sha256()[:10]


checkpoints_list: dict[str, CheckpointInfo] = {}  # title -> info, refreshed by list_checkpoints (A1111's name)


def list_checkpoints(dirs, cache_path: str | None = None) -> list[CheckpointInfo]:
    """Every .safetensors/.ckpt file and diffusers folder (has model_index.json) under `dirs`, sorted by name."""
    if isinstance(dirs, (str, os.PathLike)):
        dirs = [dirs]
    found: dict[str, CheckpointInfo] = {}
    for root_dir in dirs:
        root_dir = os.path.abspath(os.fspath(root_dir))
        if not os.path.isdir(root_dir):
            continue
        for current, subdirs, files in os.walk(root_dir, followlinks=True):
            subdirs.sort()
            for sub in list(subdirs):
                folder = os.path.join(current, sub)
                if os.path.isfile(os.path.join(folder, "model_index.json")):
                    subdirs.remove(sub)  # a diffusers folder is one checkpoint, not a dir to search
                    _add(found, folder, root_dir, cache_path)
            for file in files:
                if file.lower().endswith(CHECKPOINT_EXTENSIONS):
                    _add(found, os.path.join(current, file), root_dir, cache_path)
    infos = sorted(found.values(), key=lambda info: info.name.lower())
    checkpoints_list.clear()
    checkpoints_list.update((info.title, info) for info in infos)
    return infos


def _add(found, path, root_dir, cache_path):
    name = os.path.relpath(path, root_dir).replace(os.sep, "/")
    if name not in found:  # the first checkpoint dir wins when two hold the same name
        found[name] = CheckpointInfo(path, name, cache_path)


def get_checkpoint(title_or_name_or_hash: str) -> CheckpointInfo | None:
    """Find a listed checkpoint by title, name (with or without extension), shorthash or full sha256."""
    wanted = title_or_name_or_hash.strip()
    bare = re.sub(r"\s*\[[0-9a-fA-F]{8,64}\]$", "", wanted)
    for info in checkpoints_list.values():
        if wanted in (info.title, info.name, info.model_name) or bare in (info.name, info.model_name):
            return info
    if re.fullmatch(r"[0-9a-fA-F]{8,64}", wanted):
        for info in checkpoints_list.values():
            if info._sha256 and info._sha256.startswith(wanted.lower()):
                return info
    return None
