"""Optional torch.compile of the U-Net, chosen by the `unet_compile` setting.

Off (default)            the U-Net runs eagerly, as diffusers runs it.
Inductor                 torch.compile with the Inductor backend; weights stay graph inputs.
Inductor + frozen weights  Inductor with weight freezing: the weights become constants of the
                         compiled graph, which lets Inductor pre-pack them for oneDNN. This is
                         the only variant measured to pay on CPU (benchmarks/README.md:
                         0.74x plain bf16 per SD1.5 step), but a frozen graph never sees a
                         later in-place weight edit, so a LoRA merged or restored after the
                         compile would be silently ignored.
Inductor + CUDA graphs   Inductor that also records each compiled graph as a CUDA graph and
                         replays it (torch.compile's "reduce-overhead"): one launch per step
                         instead of hundreds, which is what bounds small-batch steps on a fast
                         GPU. Weights stay graph inputs at fixed addresses, so in-place LoRA
                         edits are seen. On a CPU it runs as plain Inductor.

That is why the compiled callable is keyed by a stamp of the weights: the
identity and in-place version counter of every parameter. Any change (LoRA
merge or restore, a checkpoint switch, an extension editing weights) makes
the next call compile again rather than run stale weights. With a LoRA in the
prompt that is every job (its weights are merged at the start and restored at
the end), so frozen weights pay only for prompts without LoRA. Compiling costs
about two minutes for a full-size SD1.5 U-Net on two CPU cores (once per model,
image size, batch size and LoRA set); Inductor's on-disk cache is kept under
the data folder's cache/ so unchanged graphs compile faster after a restart.
"""
from __future__ import annotations

import logging
import os
import weakref

import torch

log = logging.getLogger(__name__)

FROZEN = "Inductor + frozen weights"
CUDA_GRAPHS = "Inductor + CUDA graphs"
MODES = ("Off", "Inductor", FROZEN, CUDA_GRAPHS)

# unet -> (weights stamp, compiled callable); weak so a switched-away model is not kept alive.
_compiled: "weakref.WeakKeyDictionary[torch.nn.Module, tuple[tuple, object]]" = weakref.WeakKeyDictionary()


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise ValueError(f"unet_compile: must be one of {', '.join(MODES)}; got {mode!r}")
    return mode


def weights_stamp(module: torch.nn.Module) -> tuple:
    """Changes whenever a parameter or buffer is replaced or edited in place (LoRA merge/restore, switch)."""
    return tuple((id(t), t._version) for t in (*module.parameters(), *module.buffers()))


def _use_cache_dir() -> None:
    """Keep Inductor's on-disk cache in Easel's data folder (it survives /tmp cleaning and restarts)."""
    if "TORCHINDUCTOR_CACHE_DIR" in os.environ:
        return
    from modules import paths, shared

    data_dir = shared.paths.data_dir if shared.paths is not None else paths.repo_root()
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(data_dir / "cache" / "inductor")


def _compile(unet: torch.nn.Module, mode: str):
    _use_cache_dir()
    # Dynamo caches compiled code per code object, shared by every module of a class: a graph
    # frozen with the old weights would be reused by a fresh torch.compile wrapper. Reset first.
    torch.compiler.reset()
    log.info("compiling the U-Net (%s); the first step takes a while", mode)
    # "triton.cudagraphs" is what mode="reduce-overhead" sets (torch.compile takes a mode or options, not both);
    # Inductor records graphs only for CUDA tensors, so on a CPU this mode is plain Inductor.
    return torch.compile(unet, backend="inductor", dynamic=False,
                         options={"freezing": mode == FROZEN, "triton.cudagraphs": mode == CUDA_GRAPHS})


def for_model(model):
    """The U-Net callable for sampling with `model` (a LoadedModel) under the current setting."""
    return unet_for_sampling(model.unet, current_mode(), offloaded=bool(getattr(model, "offload_hooks", None)))


def unet_for_sampling(unet: torch.nn.Module, mode: str = "Off", offloaded: bool = False):
    """The callable that sampling should call for `unet` under `mode` (the module itself when Off).

    Compiled callables are reused while the weights stamp is unchanged, and
    rebuilt otherwise. Offloaded models (--medvram/--lowvram move weights on
    every call) run eagerly: compiling across the offload hooks would bake in one placement.
    """
    check_mode(mode)
    if mode == "Off":
        return unet
    if offloaded:
        log.warning("unet_compile=%s is ignored with --medvram/--lowvram: the U-Net runs eagerly", mode)
        return unet
    # Only frozen graphs hold weight values; plain Inductor reads the live parameters on every call.
    stamp = (mode, weights_stamp(unet) if mode == FROZEN else tuple(map(id, unet.parameters())))
    cached = _compiled.get(unet)
    if cached is not None and cached[0] == stamp:
        return cached[1]
    compiled = _compile(unet, mode)
    _compiled[unet] = (stamp, compiled)
    return compiled


def current_mode() -> str:
    from modules import shared

    return getattr(shared.opts, "unet_compile", "Off") if shared.opts is not None else "Off"
