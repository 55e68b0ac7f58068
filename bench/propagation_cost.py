"""Seconds and peak memory of one propagation sample (diffusers' WanVACEPipeline) at the real sizes of
Wan2.1-VACE-1.3B and -14B, with random weights: the cost of few-step (distilled, CFG 1.2) against many-step
(CFG 5) sampling, with and without torch.compile. The text encoder is left out (random prompt embeddings
of UMT5-XXL's width); the VAE is Wan2.1's at its real size.

    python -m bench.propagation_cost --model vace-14b --steps 4 50 --compile   # on a GPU
    python -m bench.propagation_cost --model tiny --device cpu --dtype float32   # checks the script itself
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import numpy as np
import torch
from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanVACEPipeline, WanVACETransformer3DModel
from PIL import Image

from models.frames import torch_dtype

COMMON = {"attention_head_dim": 128, "in_channels": 16, "out_channels": 16, "text_dim": 4096, "vace_in_channels": 96}
TRANSFORMERS: dict[str, dict[str, Any]] = {  # the released checkpoints' transformer/config.json
    "vace-1.3b": {
        **COMMON,
        "num_attention_heads": 12,
        "num_layers": 30,
        "ffn_dim": 8960,
        "vace_layers": list(range(0, 30, 2)),
    },
    "vace-14b": {
        **COMMON,
        "num_attention_heads": 40,
        "num_layers": 40,
        "ffn_dim": 13824,
        "vace_layers": list(range(0, 40, 5)),
    },
    "tiny": {
        **COMMON,
        "attention_head_dim": 8,
        "num_attention_heads": 2,
        "num_layers": 2,
        "ffn_dim": 32,
        "vace_layers": [0],
        "text_dim": 32,
    },
}
SIZES = {"vace-1.3b": (480, 832, 81), "vace-14b": (480, 832, 81), "tiny": (32, 32, 9)}
CFG_BY_STEPS = {4: 1.2}  # few-step sampling with a distillation LoRA uses CFG 1.2; many-step uses 5


def build_pipeline(model: str, device: str, dtype: torch.dtype) -> WanVACEPipeline:
    torch.manual_seed(0)
    with torch.device(device):
        previous = torch.get_default_dtype()
        torch.set_default_dtype(dtype)  # 14B parameters built straight in bf16 on the device
        try:
            transformer = WanVACETransformer3DModel(**TRANSFORMERS[model])
        finally:
            torch.set_default_dtype(previous)
        vae_config = (
            {} if model != "tiny" else {"base_dim": 8, "z_dim": 16, "dim_mult": [1, 1, 1, 1], "num_res_blocks": 1}
        )
        vae = AutoencoderKLWan(**vae_config).to(torch.float32)
    scheduler = UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=2.0)
    pipe = WanVACEPipeline(tokenizer=None, text_encoder=None, transformer=transformer, vae=vae, scheduler=scheduler)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def sample_once(pipe: WanVACEPipeline, model: str, steps: int, device: str, dtype: torch.dtype) -> float:
    height, width, frames = SIZES[model]
    text_dim = TRANSFORMERS[model]["text_dim"]
    rng = np.random.default_rng(0)
    control = [Image.fromarray((rng.random((height, width, 3)) * 255).astype(np.uint8)) for _ in range(frames)]
    embeds = torch.randn(1, 512, text_dim, generator=torch.Generator().manual_seed(0)).to(device, dtype)
    guidance = CFG_BY_STEPS.get(steps, 5.0)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    started = time.perf_counter()
    with torch.inference_mode():
        pipe(
            video=control,
            mask=[Image.new("L", (width, height), 255)] * frames,
            reference_images=[control[0]],
            prompt_embeds=embeds,
            negative_prompt_embeds=embeds if guidance > 1 else None,
            height=height,
            width=width,
            num_frames=frames,
            num_inference_steps=steps,
            guidance_scale=guidance,
            generator=torch.Generator("cpu").manual_seed(0),
            output_type="np",
        )
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=sorted(TRANSFORMERS), default="vace-1.3b")
    parser.add_argument("--steps", type=int, nargs="+", default=[4, 50])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--compile", action="store_true", help="also time the transformer under torch.compile")
    args = parser.parse_args()
    dtype = torch_dtype(args.dtype)
    pipe = build_pipeline(args.model, args.device, dtype)
    params = sum(p.numel() for p in pipe.transformer.parameters()) / 1e9
    height, width, frames = SIZES[args.model]
    sys.stdout.write(f"{args.model}: {params:.2f} B transformer parameters, {frames}x{height}x{width}, {args.dtype}\n")
    variants = [("eager", pipe.transformer)]
    if args.compile:
        variants.append(("compiled", torch.compile(pipe.transformer)))
    for name, transformer in variants:
        pipe.transformer = transformer
        for steps in args.steps:
            sample_once(pipe, args.model, 1, args.device, dtype)  # warm-up (and compilation)
            if args.device.startswith("cuda"):
                torch.cuda.reset_peak_memory_stats()
            seconds = sample_once(pipe, args.model, steps, args.device, dtype)
            peak = torch.cuda.max_memory_allocated() / 2**30 if args.device.startswith("cuda") else float("nan")
            guidance = CFG_BY_STEPS.get(steps, 5.0)
            sys.stdout.write(
                f"{name:<9} {steps:>3} steps cfg {guidance:<4g} {seconds:8.2f} s/sample  peak {peak:6.1f} GiB\n"
            )


if __name__ == "__main__":
    main()
