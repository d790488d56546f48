"""Read-only /sdapi/v1 lists: samplers, schedulers, models, VAEs, styles, scripts, memory...

Lists for features Easel does not have yet (upscalers, latent upscale modes,
LoRAs, embeddings) are empty in A1111's shapes: clients
read them to find out what exists, and an empty list is the true answer.
"""
from __future__ import annotations

import csv
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
        return []

    @router.get("/latent-upscale-modes")
    def latent_upscale_modes():
        return []

    @router.get("/loras")
    def loras():
        return []

    @router.get("/embeddings")
    def embeddings():
        return {"loaded": {}, "skipped": {}}

    @router.get("/memory")
    def memory():
        return {"ram": ram_usage(), "cuda": cuda_usage()}

    @router.get("/cmd-flags")
    def cmd_flags():
        return redacted_flags(shared.cmd_opts)

    return router


def read_styles(path) -> list[dict]:
    """styles.csv rows as A1111's PromptStyleItem list; [] when the file does not exist."""
    if not path or not os.path.exists(path):
        return []
    with open(path, encoding="utf-8-sig", newline="") as f:
        return [{"name": row.get("name") or "", "prompt": row.get("prompt") or "",
                 "negative_prompt": row.get("negative_prompt") or ""}
                for row in csv.DictReader(f) if row.get("name")]


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
