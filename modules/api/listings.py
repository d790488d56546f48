"""Read-only /sdapi/v1 lists: samplers, schedulers, models, VAEs, styles, scripts, upscalers, memory...

Upscalers, LoRAs and embeddings are read from their folders on every call
(the refresh-* routes exist for A1111 clients).
"""
from __future__ import annotations

import os

from fastapi import APIRouter

from modules import shared


def create_router() -> APIRouter:
    router = APIRouter(prefix="/sdapi/v1", tags=["lists"])

    @router.get("/samplers")
    def samplers_list():
        from modules import samplers

        return [{"name": s.name, "aliases": list(s.aliases), "options": {}} for s in samplers.SAMPLERS]

    @router.get("/schedulers")
    def schedulers_list():
        from modules import samplers

        return [{"name": s.id, "label": s.label, "aliases": list(s.aliases) or None, "default_rho": -1,
                 "need_inner_model": False} for s in samplers.SCHEDULES]

    @router.get("/sd-models")
    def sd_models():
        from modules import sd_models as models_module

        result = []
        for c in shared.models.checkpoints():
            # only hashes already known: hashing a 2-7 GB file must not hold up a listing
            sha = models_module.cached_sha256(c.filename, c.cache_path, compute=False)
            result.append({"title": c.title, "model_name": c.model_name, "hash": sha[:10] if sha else None,
                           "sha256": sha, "filename": c.filename, "config": None})
        return result

    @router.get("/sd-vae")
    def sd_vae():
        from modules import sd_vae as vae_module

        return [{"model_name": v.name, "filename": v.filename} for v in vae_module.list_vaes([shared.paths.vae_dir])]

    @router.get("/prompt-styles")
    def prompt_styles():
        return read_styles(shared.paths.styles_file)

    @router.get("/scripts")
    def scripts():
        from modules import scripts as scripts_module

        return {"txt2img": [s.name for s in scripts_module.scripts_txt2img.scripts],
                "img2img": [s.name for s in scripts_module.scripts_img2img.scripts]}

    @router.get("/extensions")
    def extensions():
        from modules import extensions as extensions_module

        result = []
        for ext in extensions_module.installed:
            git = ext.git_info()
            result.append({"name": ext.name, "remote": git["remote"], "branch": git["branch"],
                           "commit_hash": git["commit_hash"], "version": (git["commit_hash"] or "")[:8],
                           "commit_date": None, "enabled": ext.enabled})
        return result

    @router.get("/upscalers")
    def upscalers():
        return list_upscalers()

    @router.get("/latent-upscale-modes")
    def latent_upscale_modes():
        from modules import hires

        return [{"name": name} for name in hires.LATENT_UPSCALE_MODES]

    @router.get("/loras")
    def loras():
        return list_loras(shared.paths.lora_dir)

    @router.post("/refresh-loras")
    def refresh_loras():
        return None   # /loras reads the folder on every call: there is nothing to refresh

    @router.get("/embeddings")
    def embeddings():
        return list_embeddings(shared.models.current if shared.models is not None else None)

    @router.post("/refresh-embeddings")
    def refresh_embeddings():
        from modules import textual_inversion

        textual_inversion.database().load(force=True)
        return None

    @router.get("/memory")
    def memory():
        return {"ram": ram_usage(), "cuda": cuda_usage()}

    @router.get("/cmd-flags")
    def cmd_flags():
        return redacted_flags(shared.cmd_opts)

    return router


def read_styles(path) -> list[dict]:
    """styles.csv rows as A1111's PromptStyleItem list; [] when the file does not exist."""
    from modules.styles import StyleDatabase   # the same reading as the page and generation

    if not path or not os.path.exists(path):
        return []
    return [{"name": s.name, "prompt": s.prompt, "negative_prompt": s.negative_prompt}
            for s in StyleDatabase(path).styles.values()]


def list_upscalers() -> list[dict]:
    """A1111's /upscalers items: None, Lanczos, Nearest, then model files (name, model_name, model_path,
    model_url, scale). A model's scale is read from its file name until it has been loaded once."""
    from modules import upscalers

    return [{"name": u.name, "model_name": u.name if u.is_model else None,
             "model_path": str(u.path) if u.is_model else None, "model_url": None, "scale": u.scale}
            for u in upscalers.available(include_none=True)]


def safetensors_metadata(path) -> dict:
    """The `__metadata__` of a .safetensors header (kohya's ss_* training notes); {} for other files."""
    import json

    if not str(path).lower().endswith(".safetensors"):
        return {}
    try:
        with open(path, "rb") as f:
            length = int.from_bytes(f.read(8), "little")
            if not 0 < length <= 100_000_000:
                return {}
            header = json.loads(f.read(length))
    except (OSError, ValueError):
        return {}   # a broken file shows up without metadata; using it reports the error
    metadata = header.get("__metadata__") if isinstance(header, dict) else None
    return dict(metadata) if isinstance(metadata, dict) else {}


def list_loras(folder) -> list[dict]:
    """A1111's /loras items: name, alias, path, metadata."""
    from modules import lora

    return [{"name": item.name, "alias": item.name, "path": item.filename,
             "metadata": safetensors_metadata(item.filename)}
            for item in lora.list_loras(folder).values()]


def _embedding_item(embedding) -> dict:
    # A1111's `shape` is the vector width; for SDXL files, clip_g's (the wider encoder)
    vectors = embedding.vectors.get("clip_g", next(iter(embedding.vectors.values())))
    return {"step": None, "sd_checkpoint": None, "sd_checkpoint_name": None,
            "shape": int(vectors.shape[1]), "vectors": int(vectors.shape[0])}


def list_embeddings(model) -> dict:
    """A1111's /embeddings: {"loaded": {name: item}, "skipped": {name: item}}.

    With a model loaded, `loaded` holds the embeddings that fit it and `skipped`
    the others; without one, every readable file counts as loaded. Skipped
    items carry a `reason` (an Easel addition A1111 clients ignore); files
    that could not be read have no shape.
    """
    from modules import textual_inversion

    db = textual_inversion.database()
    db.load()
    if model is None:
        usable, skipped = db.embeddings, dict(db.unreadable)
    else:
        fitting = db.for_model(model)
        usable, skipped = fitting.usable, fitting.skipped
    result_skipped = {}
    for name, reason in skipped.items():
        embedding = db.embeddings.get(name)
        item = _embedding_item(embedding) if embedding is not None else \
            {"step": None, "sd_checkpoint": None, "sd_checkpoint_name": None, "shape": None, "vectors": None}
        result_skipped[name] = {**item, "reason": reason}
    return {"loaded": {name: _embedding_item(e) for name, e in usable.items()}, "skipped": result_skipped}


def redacted_flags(cmd_opts) -> dict:
    """vars(cmd_opts) with passwords replaced: the flags are shown to any API caller."""
    flags = dict(vars(cmd_opts))
    for name in ("api_auth", "gradio_auth"):
        if flags.get(name):
            flags[name] = ",".join(f"{pair.split(':', 1)[0]}:***" for pair in flags[name].split(",") if pair)
    return flags


def _meminfo() -> dict[str, int]:
    values = {}
    with open("/proc/meminfo", encoding="ascii") as f:
        for line in f:
            key, _, rest = line.partition(":")
            values[key] = int(rest.split()[0]) * 1024
    return values


def _process_rss() -> int:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def ram_usage() -> dict:
    """A1111's `ram`: used = this process's resident memory, total = the machine's, free = total - used."""
    try:
        import psutil

        total, used = psutil.virtual_memory().total, psutil.Process().memory_info().rss
    except ImportError:
        try:
            total, used = _meminfo()["MemTotal"], _process_rss()
        except (OSError, KeyError, ValueError) as exc:
            return {"error": f"cannot read memory use: {exc}"}
    return {"free": total - used, "used": used, "total": total}


def cuda_usage() -> dict:
    """A1111's `cuda` block, or {"error": ...} without a CUDA device."""
    import sys

    torch = sys.modules.get("torch")
    if torch is None:  # not loaded yet (no model loaded): importing torch here would stall the server
        return {"error": "torch is not loaded yet"}
    try:
        if not torch.cuda.is_available():
            return {"error": "CUDA is not available"}
        free, total = torch.cuda.mem_get_info()
        stats = torch.cuda.memory_stats()

        def pair(name):
            return {"current": stats.get(f"{name}.all.current", 0), "peak": stats.get(f"{name}.all.peak", 0)}

        return {"system": {"free": free, "used": total - free, "total": total},
                "active": pair("active_bytes"), "allocated": pair("allocated_bytes"),
                "reserved": pair("reserved_bytes"), "inactive": pair("inactive_split_bytes"),
                "events": {"retries": stats.get("num_alloc_retries", 0), "oom": stats.get("num_ooms", 0)}}
    except Exception as exc:   # a broken driver must not break the endpoint
        return {"error": str(exc)}
