"""Where the model runs and in which precision.

CPU: fp32 by default, bf16 when asked (fp16 is ~1000x slower on CPUs without
fp16 matmul units, so it is never chosen on CPU). CUDA: fp16 unless
--no-half / --precision full. Attention: PyTorch SDPA by default (diffusers'
AttnProcessor2_0); xformers on CUDA when installed and --xformers is given.
fp32 math: "Full" (IEEE) by default; "Reduced" lets fp32 matrix products and
convolutions run on bf16 units on CPUs that have them (oneDNN) and as TF32 on
NVIDIA GPUs, the way A1111 turns on TF32: tensors and weights stay fp32.
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
    fp32_math: str = "Full"     # FP32_MATH: "Full" | "Reduced" (bf16 units on CPU, TF32 on CUDA)

    def describe(self) -> str:
        name = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}
        offload = "" if self.offload == "none" else f", offload {self.offload}"
        math = "" if self.fp32_math == "Full" else f", fp32 math {self.fp32_math.lower()}"
        return (f"{self.device.type} {name[self.dtype]} (VAE {name[self.vae_dtype]}), "
                f"attention {self.attention}{offload}{math}")


FP32_MATH = ("Full", "Reduced")


def _cuda_usable(cmd_opts) -> bool:
    use_cpu = getattr(cmd_opts, "use_cpu", None) or []
    if "all" in use_cpu or "sd" in use_cpu:
        return False
    return torch.cuda.is_available()


def choose(cmd_opts, precision_setting: str = "fp32", fp32_math: str = "Full") -> DeviceChoice:
    """Pick device, dtypes and attention backend from flags and the precision settings."""
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
    if fp32_math not in FP32_MATH:
        raise ValueError(f"fp32_math: {fp32_math!r} is not one of {', '.join(FP32_MATH)}")
    if fp32_math == "Reduced" and device.type == "cpu" and not _cpu_has_bf16():
        log.warning("reduced fp32 math ignored: this CPU has no bf16 units, so it would be slower, not faster")
        fp32_math = "Full"
    return DeviceChoice(device, dtype, vae_dtype, attention, offload_mode, fp32_math)


def _cpu_has_bf16() -> bool:
    return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())


def apply_fp32_math(choice: DeviceChoice) -> None:
    """Set PyTorch's process-wide fp32 math for the chosen device (it cannot be set per model).

    "Full" restores PyTorch's defaults ("none": IEEE on CPU; on CUDA, IEEE
    matmuls and cuDNN's own TF32 convolutions, as PyTorch ships them).
    """
    reduced = choice.fp32_math == "Reduced"
    if choice.device.type == "cuda":
        torch.backends.cuda.matmul.fp32_precision = "tf32" if reduced else "none"
    else:
        torch.backends.mkldnn.matmul.fp32_precision = "bf16" if reduced else "none"
        torch.backends.mkldnn.conv.fp32_precision = "bf16" if reduced else "none"


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
