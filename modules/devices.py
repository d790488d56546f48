"""Where the model runs and in which precision.

CPU: fp32 by default, bf16 when asked (fp16 is ~1000x slower on CPUs without
fp16 matmul units, so it is never chosen on CPU). CUDA: fp16 unless
--no-half / --precision full. Attention: PyTorch SDPA by default (diffusers'
AttnProcessor2_0); xformers on CUDA when installed and --xformers is given.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DeviceChoice:
    device: torch.device
    dtype: torch.dtype          # U-Net and text encoder
    vae_dtype: torch.dtype
    attention: str              # "sdpa" | "xformers"
    offload: str = "none"       # modules.offload.MODES: "none" | "model" (--medvram) | "blocks" (--lowvram)

    def describe(self) -> str:
        name = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}
        offload = "" if self.offload == "none" else f", offload {self.offload}"
        return (f"{self.device.type} {name[self.dtype]} (VAE {name[self.vae_dtype]}), "
                f"attention {self.attention}{offload}")


def _cuda_usable(cmd_opts) -> bool:
    use_cpu = getattr(cmd_opts, "use_cpu", None) or []
    if "all" in use_cpu or "sd" in use_cpu:
        return False
    return torch.cuda.is_available()


def native_bf16(device: torch.device) -> bool:
    """Whether the device computes bf16 in hardware: a CUDA GPU from Ampere on (compute
    capability 8.0: bf16 tensor cores; older GPUs run it emulated or not at all), or a CPU with
    AVX-512 bf16 or AMX. Elsewhere torch emulates it, and bf16 is slower than fp32 (a demo-model
    training step on a 2-core Xeon without it: 5.35 s in bf16, 3.4 s in fp32)."""
    if device.type == "cuda":
        return torch.cuda.get_device_capability(device) >= (8, 0)
    return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()


def choose(cmd_opts, precision_setting: str = "fp32") -> DeviceChoice:
    """Pick device, dtypes and attention backend from flags and the precision setting."""
    precision_flag = getattr(cmd_opts, "precision", None)
    no_half = getattr(cmd_opts, "no_half", False) or precision_flag == "full"
    if _cuda_usable(cmd_opts):
        device = torch.device("cuda")
        dtype = torch.float32 if no_half else torch.float16
        vae_dtype = torch.float32 if (no_half or getattr(cmd_opts, "no_half_vae", False)) else dtype
    else:
        device = torch.device("cpu")
        # "autocast" is the flag's default: on CPU it defers to the precision setting
        wants_bf16 = precision_flag == "bf16" or (precision_flag in (None, "autocast") and precision_setting == "bf16")
        dtype = torch.bfloat16 if wants_bf16 and not no_half else torch.float32
        vae_dtype = torch.float32 if getattr(cmd_opts, "no_half_vae", False) else dtype
        if dtype == torch.bfloat16 and not native_bf16(device):
            # honoured, since it was asked for, but the user should know why it is slow
            log.warning("bf16 asked for, but this CPU has no AVX-512 bf16 or AMX: torch emulates bf16 "
                        "and it runs slower than fp32 here; set Compute precision to fp32")
    attention = "sdpa"
    if getattr(cmd_opts, "xformers", False):
        if device.type == "cuda" and _xformers_installed():
            attention = "xformers"
        else:
            log.warning("--xformers ignored: it needs a CUDA GPU and the xformers package; using PyTorch SDPA")
    from modules import offload

    offload_mode = offload.mode_from_flags(cmd_opts)
    if offload_mode != "none" and device.type != "cuda":
        # on CPU the weights already live in system memory: offloading would only add copies
        log.warning("--medvram/--lowvram ignored: they move model parts off a GPU, and this runs on the CPU")
        offload_mode = "none"
    return DeviceChoice(device, dtype, vae_dtype, attention, offload_mode)


def _xformers_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("xformers") is not None


def apply_attention(unet, vae, attention: str) -> None:
    """Set the attention processor on the diffusers models."""
    if attention == "xformers":
        unet.enable_xformers_memory_efficient_attention()
        vae.enable_xformers_memory_efficient_attention()
        return
    from diffusers.models.attention_processor import AttnProcessor2_0

    unet.set_attn_processor(AttnProcessor2_0())
    vae.set_attn_processor(AttnProcessor2_0())
