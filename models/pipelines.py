"""Loading a diffusers pipeline from a local folder and placing it on its device, for every backend; and what
the fast preset does to a pipeline's denoiser before placing it: a distillation LoRA fused into its weights,
an attention backend of diffusers' dispatcher (SageAttention's 8-bit kernels), FP8 weights and activations
(torchao)."""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass
from typing import Any, Literal

import torch

from models.frames import torch_dtype
from models.registry import BackendConfigError

# diffusers' attention dispatcher: PyTorch's SDPA, flash-attn 2, SageAttention2 (INT8 QK, FP8 PV; diffusers takes
# sageattention>=2.1.1, which thu-ml publishes as source only: docs/profiles.md).
Attention = Literal["native", "flash", "sage"]
# "fp8": FP8 (e4m3) weights and dynamically scaled per-row FP8 activations for the denoiser's block linears.
Quantization = Literal["none", "fp8"]
FP8_CAPABILITY = (8, 9)  # Ada and Hopper: the first NVIDIA GPUs with FP8 tensor cores (torchao asserts the same)
VaeDtype = Literal["float32", "bfloat16"]

log = logging.getLogger(__name__)


def load_pipeline(cls: str | type, path: str, dtype: str) -> Any:
    """A diffusers pipeline class (or its name in diffusers) from a local folder."""
    import diffusers

    pipeline = getattr(diffusers, cls) if isinstance(cls, str) else cls
    return pipeline.from_pretrained(path, dtype=torch_dtype(dtype))


def tile_vae(pipe: Any, memory_level: int) -> None:
    """Decode in tiles above memory level 0: the VAE's peak memory falls, its output barely changes."""
    if memory_level:
        pipe.vae.enable_tiling()
    else:
        pipe.vae.disable_tiling()


def place_pipeline(pipe: Any, device: str, cpu_offload: bool) -> Any:
    """On the device, or in host memory with each model moved to the GPU only while it runs."""
    if cpu_offload:
        pipe.enable_model_cpu_offload()
    else:
        pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def fuse_lora(pipe: Any, lora_path: str, lora_scale: float) -> None:
    """A distillation LoRA (CausVid, lightx2v, Lightning), loaded through diffusers' own key conversion (each
    pipeline's loader reads the original and the diffusers namings) and fused into the weights: sampling costs
    no more than without it, and FP8 quantization sees the fused weights."""
    pipe.load_lora_weights(lora_path, adapter_name="distill")
    pipe.fuse_lora(lora_scale=lora_scale)
    pipe.unload_lora_weights()  # the weights stay fused; the adapter bookkeeping goes


def set_attention(model: Any, backend: Attention, step: str, device: str) -> Attention:
    """The denoiser's attention through diffusers' dispatcher, and the backend it runs. Where the kernel asked for
    cannot run (its package missing or too old, or `device` no CUDA GPU), PyTorch's attention runs instead, with
    one warning line naming the option and why: the same model, slower. The backend that runs is part of the
    backend's spec_id, so a call's record and cache key say which it was. Set on every denoiser, `native`
    included: diffusers also makes the last backend set the process-wide default, which would leak into a model
    that set none."""
    why_not = None if backend == "native" else attention_unavailable(device)
    if why_not is None:
        try:
            model.set_attention_backend(backend)
            return backend
        except RuntimeError as err:  # diffusers' requirement check: the kernel's package is missing or too old
            why_not = str(err).splitlines()[0]
    log.warning("backends.%s.attention: %r cannot run here (%s): PyTorch's attention instead", step, backend, why_not)
    model.set_attention_backend("native")
    return "native"


def attention_unavailable(device: str) -> str | None:
    """Why the flash and sage kernels cannot run on `device`, or None: both are CUDA-only."""
    return None if torch.device(device).type == "cuda" else f"device {device!r} is not a CUDA GPU"


def fp8_unsupported(device: str) -> str | None:
    """Why `device` cannot run FP8 matmuls, or None when it can."""
    where = torch.device(device)
    if where.type != "cuda":
        return f"device {device!r} is not a CUDA GPU"
    if not torch.cuda.is_available():
        return "no CUDA GPU is visible"
    capability = torch.cuda.get_device_capability(where)
    if capability < FP8_CAPABILITY:
        name = torch.cuda.get_device_name(where)
        return f"{name} has compute capability {capability[0]}.{capability[1]} (FP8 needs 8.9: H100, H200, L40S)"
    if importlib.util.find_spec("torchao") is None:
        return "torchao is not installed (pip install -e '.[fp8]')"
    return None


def fp8_linears(model: torch.nn.Module) -> dict[str, torch.nn.Linear]:
    """fqn -> linear of every layer FP8 takes: those of the denoiser's repeated blocks (a ModuleList at its top:
    Wan's `blocks` and `vace_blocks`, Qwen-Image's and FLUX's `transformer_blocks`), which do nearly all its
    matmul FLOPs, with sizes FP8 matmuls take (multiples of 16). Embedders, modulation and the output head stay
    in bf16. bench/flops.py counts the FLOPs of these same layers at the FP8 peak."""
    blocks = {name for name, child in model.named_children() if isinstance(child, torch.nn.ModuleList)}
    return {
        fqn: m
        for fqn, m in model.named_modules()
        if fqn.split(".")[0] in blocks
        and isinstance(m, torch.nn.Linear)
        and m.in_features % 16 == 0
        and m.out_features % 16 == 0
    }


def check_quantization(step: str, device: str, quantization: Quantization) -> None:
    """Fails before a model is loaded when its device cannot run the quantization asked for."""
    why_not = fp8_unsupported(device) if quantization == "fp8" else None
    if why_not:
        raise BackendConfigError(f"backends.{step}.quantization: 'fp8' cannot run here: {why_not}")


def quantize_fp8(model: torch.nn.Module, device: str, step: str) -> None:
    """FP8 weights and per-row dynamic FP8 activations for the block linears, by torchao, on `device` layer by
    layer (a 14B model never sits on the GPU whole in bf16)."""
    check_quantization(step, device, "fp8")
    from torchao.quantization import Float8DynamicActivationFloat8WeightConfig, PerRow, quantize_

    chosen = set(fp8_linears(model))
    quantize_(
        model,
        Float8DynamicActivationFloat8WeightConfig(granularity=PerRow()),
        filter_fn=lambda _module, fqn: fqn in chosen,
        device=device,
    )


@dataclass(frozen=True)
class Denoiser:
    """What a backend does to its pipeline's denoiser (the backends' options of the same names)."""

    lora_path: str | None = None
    lora_scale: float = 1.0
    attention: Attention = "native"
    quantization: Quantization = "none"


def prepare_denoiser(pipe: Any, step: str, device: str, denoiser: Denoiser) -> Attention:
    """In this order: the LoRA fused in the full-precision weights, the attention backend, then FP8. Returns the
    attention backend that runs (set_attention)."""
    if denoiser.lora_path:
        fuse_lora(pipe, denoiser.lora_path, denoiser.lora_scale)
    attention = set_attention(pipe.transformer, denoiser.attention, step, device)
    if denoiser.quantization == "fp8":
        quantize_fp8(pipe.transformer, device, step)
    return attention


def attention_mark(attention: Attention, device: str) -> str:
    """What a backend's spec_id adds for the attention that runs: nothing for PyTorch's own. From config alone (a
    tool's declared backend id) it is the kernel asked for on a CUDA device; where its package turns out missing
    there, set_attention warns and runs PyTorch's, and the loaded backend's spec_id says so."""
    runs = "native" if attention_unavailable(device) else attention
    return "" if runs == "native" else f":attn-{runs}"
