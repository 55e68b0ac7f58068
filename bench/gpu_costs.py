"""Seconds and peak GPU memory per sample of the expensive steps, for bench/RESULTS.md:

- propagate: diffusers' WanVACEPipeline at the real sizes of Wan2.1-VACE-1.3B / -14B with random weights,
  few-step (distilled, CFG 1.2) against many-step (CFG 5) sampling, eager or under torch.compile, with a
  chosen attention backend. The text encoder is left out (random prompt embeddings of UMT5-XXL's width);
  the VAE is Wan2.1's at its real size.
- enhance: WanVideoToVideoPipeline with the Wan2.1-T2V transformer of the same size, strength 0.1 of a
  40-step schedule (4 steps run), CFG 3, as the enhancer runs.
- judge: the factory's own Qwen2.5-VL video judge, loaded from --judge-path (a checkpoint folder, or
  tiny:qwen2_5_vl), judging two 81-frame clips.

    python -m bench.gpu_costs --model vace-14b --steps 4 50 --compile --attention flash   # on a GPU
    python -m bench.gpu_costs --stage judge --judge-path /models/Qwen2.5-VL-7B-Instruct
    python -m bench.gpu_costs --model tiny --device cpu --dtype float32   # checks the script itself
"""

from __future__ import annotations

import argparse
import sys
import time
from functools import partial
from typing import Any

import numpy as np
import torch
from diffusers import (
    AutoencoderKLWan,
    UniPCMultistepScheduler,
    WanTransformer3DModel,
    WanVACEPipeline,
    WanVACETransformer3DModel,
    WanVideoToVideoPipeline,
)
from PIL import Image

from models.frames import torch_dtype

COMMON = {"attention_head_dim": 128, "in_channels": 16, "out_channels": 16, "text_dim": 4096}
TRANSFORMERS: dict[str, dict[str, Any]] = {  # the released checkpoints' transformer/config.json
    "vace-1.3b": {**COMMON, "num_attention_heads": 12, "num_layers": 30, "ffn_dim": 8960},
    "vace-14b": {**COMMON, "num_attention_heads": 40, "num_layers": 40, "ffn_dim": 13824},
    "tiny": {
        **COMMON,
        "attention_head_dim": 8,
        "num_attention_heads": 2,
        "num_layers": 2,
        "ffn_dim": 32,
        "text_dim": 32,
    },
}
VACE_LAYERS = {"vace-1.3b": list(range(0, 30, 2)), "vace-14b": list(range(0, 40, 5)), "tiny": [0]}
SIZES = {"vace-1.3b": (480, 832, 81), "vace-14b": (480, 832, 81), "tiny": (32, 32, 9)}
CFG_BY_STEPS = {4: 1.2}  # few-step sampling with a distillation LoRA uses CFG 1.2; many-step uses 5


def random_transformer(model: str, vace: bool, device: str, dtype: torch.dtype) -> torch.nn.Module:
    torch.manual_seed(0)
    with torch.device(device):
        previous = torch.get_default_dtype()
        torch.set_default_dtype(dtype)  # 14B parameters built straight in bf16 on the device
        try:
            if vace:
                return WanVACETransformer3DModel(
                    **TRANSFORMERS[model], vace_in_channels=96, vace_layers=VACE_LAYERS[model]
                )
            return WanTransformer3DModel(**TRANSFORMERS[model])
        finally:
            torch.set_default_dtype(previous)


def wan_vae(model: str, device: str) -> AutoencoderKLWan:
    tiny = {"base_dim": 8, "z_dim": 16, "dim_mult": [1, 1, 1, 1], "num_res_blocks": 1}
    with torch.device(device):
        return AutoencoderKLWan(**(tiny if model == "tiny" else {})).to(torch.float32)


def build_pipeline(stage: str, model: str, device: str, dtype: torch.dtype, attention: str | None) -> Any:
    transformer = random_transformer(model, stage == "propagate", device, dtype)
    if attention:
        transformer.set_attention_backend(attention)
    shift = 2.0 if stage == "propagate" else 12.0  # the paper's generator; the enhancer's schedule
    scheduler = UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=shift)
    cls = WanVACEPipeline if stage == "propagate" else WanVideoToVideoPipeline
    pipe = cls(
        tokenizer=None, text_encoder=None, transformer=transformer, vae=wan_vae(model, device), scheduler=scheduler
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def timed(device: str, work: Any) -> tuple[float, float]:
    """(seconds, peak GiB on the device) of one call."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    with torch.inference_mode():
        work()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        return time.perf_counter() - started, torch.cuda.max_memory_allocated() / 2**30
    return time.perf_counter() - started, float("nan")


def diffusion_sample(pipe: Any, stage: str, model: str, steps: int, device: str, dtype: torch.dtype) -> None:
    height, width, frames = SIZES[model]
    rng = np.random.default_rng(0)
    video = [Image.fromarray((rng.random((height, width, 3)) * 255).astype(np.uint8)) for _ in range(frames)]
    embeds = torch.randn(1, 512, TRANSFORMERS[model]["text_dim"], generator=torch.Generator().manual_seed(0))
    embeds = embeds.to(device, dtype)
    common = {"prompt_embeds": embeds, "height": height, "width": width, "output_type": "np"}
    common["generator"] = torch.Generator("cpu").manual_seed(0)
    if stage == "propagate":
        guidance = CFG_BY_STEPS.get(steps, 5.0)
        pipe(
            video=video,
            mask=[Image.new("L", (width, height), 255)] * frames,
            reference_images=[video[0]],
            negative_prompt_embeds=embeds if guidance > 1 else None,
            num_frames=frames,
            num_inference_steps=steps,
            guidance_scale=guidance,
            **common,
        )
    else:  # the enhancer: strength 0.1 of a `steps`-step schedule, CFG 3
        pipe(
            video=video,
            negative_prompt_embeds=embeds,
            num_inference_steps=steps,
            strength=0.1,
            guidance_scale=3.0,
            **common,
        )


def bench_diffusion(args: argparse.Namespace) -> None:
    dtype = torch_dtype(args.dtype)
    pipe = build_pipeline(args.stage, args.model, args.device, dtype, args.attention)
    params = sum(p.numel() for p in pipe.transformer.parameters()) / 1e9
    height, width, frames = SIZES[args.model]
    attention = args.attention or "default"
    sys.stdout.write(
        f"{args.stage} {args.model}: {params:.2f} B transformer parameters, {frames}x{height}x{width}, "
        f"{args.dtype}, attention {attention}\n"
    )
    variants = [("eager", pipe.transformer)] + ([("compiled", torch.compile(pipe.transformer))] if args.compile else [])
    steps_list = args.steps if args.stage == "propagate" else [40]
    for name, transformer in variants:
        pipe.transformer = transformer
        for steps in steps_list:
            warm_up = 2 if args.stage == "propagate" else steps  # the enhancer needs its whole schedule
            sample = partial(diffusion_sample, pipe, args.stage, args.model, device=args.device, dtype=dtype)
            timed(args.device, partial(sample, warm_up))
            seconds, peak = timed(args.device, partial(sample, steps))
            what = (
                f"{steps:>3} steps cfg {CFG_BY_STEPS.get(steps, 5.0):<4g}"
                if args.stage == "propagate"
                else "strength 0.1 of 40"
            )
            sys.stdout.write(f"{name:<9} {what}  {seconds:8.2f} s/sample  peak {peak:6.1f} GiB\n")


def bench_judge(args: argparse.Namespace) -> None:
    from models.checkpoints import resolve_checkpoint
    from models.protocols import JudgeRequest
    from models.qwen_vl import QwenVLVideoJudge

    judge = QwenVLVideoJudge(resolve_checkpoint("video_judge", args.judge_path, False), args.device, args.dtype)
    height, width, frames = SIZES[args.model]
    rng = np.random.default_rng(0)
    clip = (rng.random((frames, height, width, 3)) * 255).astype(np.uint8)
    request = JudgeRequest(source=clip, edited=clip[::-1].copy(), prompt="Score the edit as JSON.", instruction="x")
    timed(args.device, lambda: judge.judge(request))  # warm-up
    seconds, peak = timed(args.device, lambda: judge.judge(request))
    sys.stdout.write(
        f"judge {judge.spec_id}: two {frames}x{height}x{width} clips  {seconds:8.2f} s/sample  peak {peak:6.1f} GiB\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stage", choices=["propagate", "enhance", "judge"], default="propagate")
    parser.add_argument(
        "--model", choices=sorted(TRANSFORMERS), default="vace-1.3b", help="transformer size and clip size"
    )
    parser.add_argument("--steps", type=int, nargs="+", default=[4, 50], help="propagation steps to compare")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--compile", action="store_true", help="also time the transformer under torch.compile")
    parser.add_argument("--attention", help="a diffusers attention backend: native, flash, _flash_3, sage, ...")
    parser.add_argument("--judge-path", default="tiny:qwen2_5_vl", help="Qwen2.5-VL folder for --stage judge")
    args = parser.parse_args()
    (bench_judge if args.stage == "judge" else bench_diffusion)(args)


if __name__ == "__main__":
    main()
