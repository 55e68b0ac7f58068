"""GPU memory the weights of a preset's models take when they stay resident, counted from the real classes
built on the meta device (exact parameter counts; bf16 2 bytes, FP8 block linears 1 byte, Wan's VAE in its
`vae_dtype` as the backends load it), and whether they fit a card. Activations come on top: bench/gpu_costs.py
measures the peak of each stage."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bench.meta_flops import (
    MODELS,
    depth_model,
    flux_transformer,
    qwen_image_transformer,
    qwen_image_vae_model,
    qwen_vl,
    resident_bytes,
    t5_model,
    wan_transformer,
    wan_vae,
)
from bench.stages import preset_backends, wan_size


@dataclass
class Part:
    step: str  # the backend step(s) the weights serve
    model: str
    gb: float
    offloaded: bool  # kept in host memory (cpu_offload), on the GPU only while it runs


def parts(preset: str) -> list[Part]:
    b = preset_backends(preset)
    vl = resident_bytes(qwen_vl()) / 1e9
    out = [Part("captioner, judges", "Qwen2.5-VL-7B (one copy for the three roles)", vl, False)]
    editor, q = b["editor"], b["editor"].get("quantization", "none")
    off = bool(editor.get("cpu_offload"))
    if editor["kind"] == "flux_kontext":
        out.append(Part("editor", f"FLUX.1 Kontext transformer{fp8(q)}", gb(flux_transformer(), q), off))
        out.append(Part("editor", "T5-XXL text encoder", gb(t5_model("t5_xxl")), off))
    else:
        out.append(Part("editor", f"Qwen-Image-Edit transformer{fp8(q)}", gb(qwen_image_transformer(), q), off))
        out.append(Part("editor", "its Qwen2.5-VL-7B text encoder", vl, off))
        out.append(Part("editor", "Qwen-Image VAE", gb(qwen_image_vae_model()), off))
    out.append(Part("depth", "Depth Anything V2 Large (fp16)", gb(depth_model()), False))
    for step, vace in (("propagator", True), ("enhancer", False)):
        spec, q = b[step], b[step].get("quantization", "none")
        model = wan_size(spec["path"])
        name = f"Wan2.1-{'VACE' if vace else 'T2V'}-{'1.3B' if model == 'vace-1.3b' else '14B'} transformer{fp8(q)}"
        off = bool(spec.get("cpu_offload"))
        out.append(Part(step, name, gb(wan_transformer(model, vace), q), off))
        out.append(Part(step, "UMT5-XXL text encoder", gb(t5_model("umt5_xxl")), off))
        vae_bytes = 2 if spec.get("vae_dtype") == "bfloat16" else 4
        out.append(
            Part(step, f"Wan VAE ({'bf16' if vae_bytes == 2 else 'fp32'})", gb(wan_vae(), dtype_bytes=vae_bytes), off)
        )
    return out


def gb(model: Any, quantization: str = "none", dtype_bytes: int = 2) -> float:
    return resident_bytes(model, quantization, dtype_bytes) / 1e9


def fp8(quantization: str) -> str:
    return " (FP8 block linears)" if quantization == "fp8" else " (bf16)"


def resident_gb(preset: str) -> float:
    """GB of weights held on the GPU at all times (offloaded models count only while they run)."""
    return sum(p.gb for p in parts(preset) if not p.offloaded)


def gb_left(preset: str, card: str) -> float:
    """GB of the card left for activations once the resident weights and the largest offloaded model are on it."""
    rows = parts(preset)
    largest = max((p.gb for p in rows if p.offloaded), default=0.0)
    return MODELS["devices"][card]["memory_gb"] - resident_gb(preset) - largest
