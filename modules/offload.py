"""--medvram / --lowvram: keep model parts in CPU memory and move them to the GPU only while they run.

Built on accelerate's offload hooks (`cpu_offload_with_hook`): a hook moves its
module to the execution device just before the module's forward and sends the
previous module in the chain back to the CPU. diffusers' VAE calls the hook
from `encode`/`decode` too (`apply_forward_hook`), so decoding is covered.

- "model" (--medvram): one hook per network (text encoders, U-Net, VAE); only
  the network that runs is on the GPU.
- "blocks" (--lowvram): one hook per top-level block of each network (each
  down/up block, the middle block, the VAE's encoder and decoder...); only the
  block that runs is on the GPU. Slowest, least VRAM; same idea as A1111's
  lowvram.

The weights stay real tensors in CPU memory (not meta tensors as with
accelerate's sequential offload), so LoRA patching and VAE swapping work
unchanged. The chain is closed into a ring so that the first part of the next
job sends the last part of the previous one (the VAE) home.
"""
from __future__ import annotations

import logging

import torch

log = logging.getLogger(__name__)

MODES = ("none", "model", "blocks")


def mode_from_flags(cmd_opts) -> str:
    if getattr(cmd_opts, "lowvram", False):
        return "blocks"
    if getattr(cmd_opts, "medvram", False):
        return "model"
    return "none"


def _has_weights(module: torch.nn.Module) -> bool:
    return next(module.parameters(), None) is not None


def _blocks(network: torch.nn.Module) -> list[torch.nn.Module]:
    """The network's top-level children in call order, ModuleLists opened up (they have no forward)."""
    parts = []
    for child in network.children():
        if isinstance(child, torch.nn.ModuleList):
            parts.extend(item for item in child if _has_weights(item))
        elif _has_weights(child):
            parts.append(child)
    return parts


def _parts(model, mode: str) -> list[torch.nn.Module]:
    networks = [*model.text_encoders, model.unet, model.vae]
    if mode == "model":
        return networks
    parts = list(model.text_encoders)    # small, and CLIP's submodules share position ids across blocks
    for network in (model.unet, model.vae):
        parts.extend(_blocks(network))
    return parts


def apply(model, mode: str, execution_device) -> list:
    """Install the offload hooks on a LoadedModel whose weights are in CPU memory; returns the hooks."""
    if mode not in MODES:
        raise ValueError(f"offload mode {mode!r} is not one of {', '.join(MODES)}")
    if mode == "none":
        return []
    from accelerate import cpu_offload_with_hook

    execution_device = torch.device(execution_device)
    hooks, previous = [], None
    for part in _parts(model, mode):
        _, previous = cpu_offload_with_hook(part, execution_device, prev_module_hook=previous)
        hooks.append(previous)
    # close the ring: the first part of the next job offloads the last part of this one
    hooks[0].hook.prev_module_hook = hooks[-1]
    model.device = execution_device
    model.offload_hooks = hooks
    log.info("offload %s: %d parts move to %s only while they run", mode, len(hooks), execution_device)
    return hooks


def remove(model) -> None:
    """Take the hooks off again (before unloading or reloading)."""
    from accelerate.hooks import remove_hook_from_module

    for hook in getattr(model, "offload_hooks", []) or []:
        remove_hook_from_module(hook.model)
    model.offload_hooks = []
