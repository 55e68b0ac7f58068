"""Seconds per call, MFU and peak GPU memory of the expensive stages of each preset, for bench/RESULTS.md:
propagation (Wan2.1-VACE-14B), the enhancer (Wan2.1-T2V-14B), the key-frame editor (Qwen-Image-Edit) and the
video judge (Qwen2.5-VL-7B), the real diffusers/transformers classes at their released configs' sizes with
random weights, each with the preset's settings (configs/<preset>.yaml: steps, CFG passes, FP8, attention).

A call's seconds are composed from timed parts, each measured `--repeats` times after one warm-up, its
inputs made on the device before the clock starts:
- one denoiser pass, times the passes the preset's call runs (steps x 2 under CFG): the passes of a call are
  the same computation, and at 720p a paper-preset propagation is minutes long;
- the VAE encodes and decode the pipeline does (VACE encodes the control video twice and the reference once);
- the judge: one whole generate (vision tower, prefill, the answer's tokens; random tokens, never stopping
  early), without the grammar mask (bench/decoding.py measures that).
Left out: text encoders (prompt embeddings are inputs here), schedulers, pre/post-processing, and LoRAs (a
fused LoRA costs nothing). MFU = the seconds the counted FLOPs (bench/meta_flops.py) take at the dense peak,
FP8 matmuls at the FP8 peak, over the measured seconds. Peak memory: the most the stage held, weights included.
Models are built one at a time and freed; presets run in the order given (FP8 quantizes in place: last).

    python -m bench.gpu_costs --preset paper fast --size 720p --repeats 3     # 8-9 minutes on one H200
    python -m bench.gpu_costs --preset fast --size tiny --device cpu --dtype float32 --quantization none
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import torch

from bench.meta_flops import (
    MODELS,
    TRANSFORMERS,
    VACE_LAYERS,
    Flops,
    qwen_image_forward,
    qwen_image_vae,
    qwen_vl_call,
    wan_forward,
    wan_vae_decode,
    wan_vae_encode,
)
from bench.stages import TOKENS, preset_backends, qwen_image_size, wan_latent_frames
from models.frames import torch_dtype
from models.pipelines import quantize_fp8, set_attention

SIZES = {  # clip (height, width, frames), key frame (height, width), key-frame editor's side, VL frames
    "480p": ((480, 832, 81), (468, 832), 1024, 16),
    "720p": ((720, 1280, 101), (720, 1280), 1024, 16),
    "tiny": ((32, 32, 9), (32, 32), 32, 2),  # the script's own test, on CPU
}
QWEN_IMAGE_TINY = {
    "patch_size": 2,
    "in_channels": 16,
    "out_channels": 4,
    "num_layers": 2,
    "attention_head_dim": 16,
    "num_attention_heads": 3,
    "joint_attention_dim": 16,
    "axes_dims_rope": (8, 4, 4),
}
QWEN_IMAGE_VAE_TINY = {
    "base_dim": 24,
    "z_dim": 4,
    "dim_mult": [1, 2, 4],
    "num_res_blocks": 1,
    "temperal_downsample": [False, True],
}
LOGS = Path(__file__).parent / "logs"


@dataclass
class Timing:
    seconds: list[float]
    peak_gib: float

    @property
    def mean(self) -> float:
        return sum(self.seconds) / len(self.seconds)


class Bench:
    def __init__(self, args: argparse.Namespace, log: TextIO | None) -> None:
        self.device, self.dtype, self.repeats, self.log = args.device, torch_dtype(args.dtype), args.repeats, log
        self.size = args.size
        self.clip, self.keyframe, self.edit_side, self.vl_frames = SIZES[args.size]
        self.gpu = next((d for d in MODELS["devices"] if d.split()[0] in device_name(self.device)), None)
        self.vae_parts: dict[str, float] = {}  # Wan's VAE, timed once for both video stages

    def say(self, line: str) -> None:
        sys.stdout.write(line + "\n")
        if self.log:
            self.log.write(line + "\n")
            self.log.flush()

    def sync(self) -> None:
        if self.device.startswith("cuda"):
            torch.cuda.synchronize()

    def time(self, work: Callable[[], Any], repeats: int | None = None, warm_up: bool = True) -> Timing:
        """One warm-up, then `repeats` timed calls; the peak of device memory across them."""
        with torch.inference_mode():
            if warm_up:
                work()
            if self.device.startswith("cuda"):
                torch.cuda.reset_peak_memory_stats()
            seconds = []
            for _ in range(repeats or self.repeats):
                self.sync()
                started = time.perf_counter()
                work()
                self.sync()
                seconds.append(time.perf_counter() - started)
        peak = torch.cuda.max_memory_allocated() / 2**30 if self.device.startswith("cuda") else float("nan")
        return Timing(seconds, peak)

    def mfu(self, flops: Flops, decode_bytes: float, seconds: float) -> str:
        if self.gpu is None or self.size == "tiny":
            return "n/a"
        peak = MODELS["devices"][self.gpu]
        at_peak = (flops.total - flops.fp8) / (peak["bf16_tflops"] * 1e12) + flops.fp8 / (peak["fp8_tflops"] * 1e12)
        return f"{(at_peak + decode_bytes / (peak['hbm_tb_s'] * 1e12)) / seconds:.0%}"

    def report(self, preset: str, stage: str, part: str, t: Timing, per_call: float, mfu: str) -> None:
        runs = " ".join(f"{s:.3f}" for s in t.seconds)
        self.say(
            f"{preset:<6} {stage:<17} {part:<44} runs [{runs}] s  mean {t.mean:8.3f} s  "
            f"per call {per_call:8.2f} s  MFU {mfu:>4}  peak {t.peak_gib:6.1f} GiB"
        )

    def randn(self, *shape: int, dtype: torch.dtype | None = None) -> torch.Tensor:
        generator = torch.Generator(self.device).manual_seed(0)
        return torch.randn(*shape, generator=generator, device=self.device, dtype=dtype or self.dtype)

    def built(self, make: Callable[[], torch.nn.Module], dtype: torch.dtype | None = None) -> Any:
        torch.manual_seed(0)
        with torch.device(self.device):
            previous = torch.get_default_dtype()
            torch.set_default_dtype(dtype or self.dtype)  # billions of parameters made straight on the device
            try:
                return make().eval()
            finally:
                torch.set_default_dtype(previous)


def device_name(device: str) -> str:
    return torch.cuda.get_device_name(torch.device(device)) if device.startswith("cuda") else device


def prepare(bench: Bench, model: torch.nn.Module, spec: dict[str, Any], step: str) -> str:
    """The preset's attention backend and FP8 on the model (FP8 in place, once); what it runs, in words."""
    set_attention(model, spec.get("attention", "native"), step)
    fp8 = spec.get("quantization") == "fp8"
    if fp8 and not getattr(model, "_bench_fp8", False):
        quantize_fp8(model, bench.device, step)
        model._bench_fp8 = True  # type: ignore[assignment]
    return f"{spec.get('attention', 'native')}{', FP8' if fp8 else ''}"


def bench_wan(bench: Bench, presets: dict[str, dict[str, Any]], vace: bool) -> None:
    from diffusers import WanTransformer3DModel, WanVACETransformer3DModel

    step, stage = ("propagator", "propagate") if vace else ("enhancer", "enhance_temporal")
    model = "tiny" if bench.size == "tiny" else "vace-14b"
    height, width, frames = bench.clip
    latent = wan_latent_frames(frames) + vace  # VACE's reference frame rides along in time
    if vace:
        config = {**TRANSFORMERS[model], "vace_in_channels": 96, "vace_layers": VACE_LAYERS[model]}
        transformer = bench.built(lambda: WanVACETransformer3DModel(**config))
    else:
        transformer = bench.built(lambda: WanTransformer3DModel(**TRANSFORMERS[model]))
    inputs = {
        "hidden_states": bench.randn(1, 16, latent, height // 8, width // 8),
        "timestep": torch.full((1,), 500.0, device=bench.device),
        "encoder_hidden_states": bench.randn(1, TOKENS["wan_text"], TRANSFORMERS[model]["text_dim"]),
        "return_dict": False,
    }
    if vace:
        inputs["control_hidden_states"] = bench.randn(1, 96, latent, height // 8, width // 8)
    vae_time = time_wan_vae(bench, frames, vace)
    for preset, specs in presets.items():
        spec = specs[step]
        what = prepare(bench, transformer, spec, step)
        t = bench.time(lambda: transformer(**inputs))
        runs = spec["steps"] * (1 if vace else spec["strength"])
        passes = int(runs) * (2 if spec["guidance_scale"] > 1 else 1)
        flops = wan_forward(model, latent, height, width, vace).run_in(spec.get("quantization", "none"))
        part = f"transformer pass ({what}) x {passes}"
        bench.report(preset, stage, part, t, passes * t.mean + vae_time[0], bench.mfu(flops, 0, t.mean))
    bench.say(f"{'':<6} {stage:<17} {'VAE encodes + decode (fp32)':<44} {vae_time[0]:8.2f} s  MFU {vae_time[1]}")


def time_wan_vae(bench: Bench, frames: int, vace: bool) -> tuple[float, str]:
    """(seconds, MFU) of the VAE work of one call: the clip encoded (twice for VACE's control video), VACE's
    reference frame encoded, the result decoded (the two stages share the timings)."""
    parts = bench.vae_parts or wan_vae_parts(bench, frames)
    bench.vae_parts = parts
    seconds = (2 if vace else 1) * parts["encode"] + vace * parts["one"] + parts["decode"]
    height, width, _ = bench.clip
    flops = (2 if vace else 1) * wan_vae_encode(frames, height, width) + vace * wan_vae_encode(1, height, width)
    flops += wan_vae_decode(wan_latent_frames(frames), height, width)
    return seconds, bench.mfu(Flops(flops), 0, seconds)


def wan_vae_parts(bench: Bench, frames: int) -> dict[str, float]:
    """Seconds of one encode of the clip, of one frame, and of one decode, each timed once after a warm-up on
    5 frames (at 720p a whole clip takes tens of seconds); their peak memory is logged."""
    from diffusers import AutoencoderKLWan

    tiny = {"base_dim": 8, "z_dim": 16, "dim_mult": [1, 1, 1, 1], "num_res_blocks": 1}
    vae = bench.built(lambda: AutoencoderKLWan(**(tiny if bench.size == "tiny" else {})), torch.float32)
    height, width, _ = bench.clip
    video = bench.randn(1, 3, frames, height, width, dtype=torch.float32)
    latents = bench.randn(1, 16, wan_latent_frames(frames), height // 8, width // 8, dtype=torch.float32)
    with torch.inference_mode():
        vae.decode(vae.encode(video[:, :, :5]).latent_dist.mode())  # warm-up: kernels chosen, caches made
    encode = bench.time(lambda: vae.encode(video), repeats=1, warm_up=False)
    one = bench.time(lambda: vae.encode(video[:, :, :1]), repeats=1, warm_up=False)
    decode = bench.time(lambda: vae.decode(latents), repeats=1, warm_up=False)
    peak = max(encode.peak_gib, decode.peak_gib)
    bench.say(
        f"{'':<6} {'wan VAE':<17} {'encode / one frame / decode (fp32)':<44} {encode.mean:.2f} / "
        f"{one.mean:.2f} / {decode.mean:.2f} s  peak {peak:6.1f} GiB"
    )
    return {"encode": encode.mean, "one": one.mean, "decode": decode.mean}


def bench_editor(bench: Bench, presets: dict[str, dict[str, Any]]) -> None:
    from diffusers import AutoencoderKLQwenImage, QwenImageTransformer2DModel

    from bench.meta_flops import config, vl_grid

    real = bench.size != "tiny"
    cfg = config("qwen_image_transformer") if real else QWEN_IMAGE_TINY
    transformer = bench.built(lambda: QwenImageTransformer2DModel(**cfg))
    height, width = qwen_image_size(*bench.keyframe, bench.edit_side)
    grid = vl_grid(height, width, 1, 12845056)
    text = grid[1] * grid[2] // 4 + TOKENS["chat_overhead"] + TOKENS["instruction"]  # as bench/stages.py counts
    h, w = height // 16, width // 16
    inputs = {
        "hidden_states": bench.randn(1, 2 * h * w, cfg["in_channels"]),
        "encoder_hidden_states": bench.randn(1, text, cfg["joint_attention_dim"]),
        "encoder_hidden_states_mask": torch.ones(1, text, device=bench.device),
        "timestep": torch.full((1,), 0.5, device=bench.device),
        "img_shapes": [[(1, h, w), (1, h, w)]],
        "return_dict": False,
    }
    vae = bench.built(lambda: AutoencoderKLQwenImage(**({} if real else QWEN_IMAGE_VAE_TINY)))
    image = bench.randn(1, 3, 1, height, width)
    vae_s = bench.time(lambda: vae.decode(vae.encode(image).latent_dist.mode()), repeats=1).mean
    for preset, specs in presets.items():
        spec = specs["editor"]
        if spec["kind"] != "qwen_image_edit":
            bench.say(f"{preset:<6} edit_keyframe     {spec['kind']} is not measured here (Qwen-Image-Edit only)")
            continue
        what = prepare(bench, transformer, spec, "editor")
        t = bench.time(lambda: transformer(**inputs))
        passes = spec["steps"] * (2 if spec.get("true_cfg_scale", 4.0) > 1 else 1)
        flops = qwen_image_forward(height, width, text).run_in(spec.get("quantization", "none")) if real else Flops(0)
        part = f"transformer pass ({what}) x {passes}"
        bench.report(preset, "edit_keyframe", part, t, passes * t.mean + vae_s, bench.mfu(flops, 0, t.mean))
    vae_mfu = bench.mfu(Flops(qwen_image_vae(height, width)), 0, vae_s) if real else "n/a"
    bench.say(f"{'':<6} {'edit_keyframe':<17} {'VAE encode + decode':<44} {vae_s:8.2f} s  MFU {vae_mfu}")


def bench_judge(bench: Bench) -> None:
    """The video judge's generate on two clips of `vl_frames` frames (the same for both presets)."""
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    from bench.meta_flops import config, vl_grid
    from bench.stages import prompt_tokens

    if bench.size == "tiny":
        from models.tiny import qwen2_5_vl

        cfg = qwen2_5_vl()[0].config
    else:
        cfg = Qwen2_5_VLConfig(**config("qwen2_5_vl_7b"))
    model = bench.built(lambda: Qwen2_5_VLForConditionalGeneration(cfg))
    grid = vl_grid(*bench.clip[:2], bench.vl_frames, 448 * 448 if bench.size != "tiny" else 28 * 28 * 16)
    t, h, w = grid
    text, answer = prompt_tokens("judge_video.j2"), TOKENS["judge_video_answer"] if bench.size != "tiny" else 8
    video = [cfg.vision_start_token_id] + [cfg.video_token_id] * (t * h * w // 4) + [cfg.vision_end_token_id]
    words = torch.randint(10, 200, (text,), generator=torch.Generator().manual_seed(0)).tolist()
    ids = torch.tensor([video + video + words], device=bench.device)
    inputs = {
        "input_ids": ids,
        "attention_mask": torch.ones_like(ids),
        "pixel_values_videos": bench.randn(2 * t * h * w, 3 * 2 * 14 * 14),
        "video_grid_thw": torch.tensor([grid, grid], device=bench.device),
    }
    run = {"max_new_tokens": answer, "min_new_tokens": answer, "do_sample": False}
    timing = bench.time(lambda: model.generate(**inputs, **run))
    flops, decode_bytes = qwen_vl_call([grid, grid], text, answer) if bench.size != "tiny" else (0.0, 0.0)
    part = f"generate: 2 videos x {bench.vl_frames} frames, {answer} tokens"
    bench.report("both", "judge_video", part, timing, timing.mean, bench.mfu(Flops(flops), decode_bytes, timing.mean))


def free(bench: Bench) -> None:
    gc.collect()
    if bench.device.startswith("cuda"):
        torch.cuda.empty_cache()


STAGES = ("propagate", "enhance", "edit", "judge")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", nargs="+", choices=["paper", "fast"], default=["paper", "fast"])
    parser.add_argument("--size", choices=sorted(SIZES), default="720p")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls of each part, after one warm-up")
    parser.add_argument("--stage", nargs="+", choices=STAGES, default=list(STAGES))
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--attention", choices=["native", "flash", "sage"], help="instead of each preset's")
    parser.add_argument("--quantization", choices=["none", "fp8"], help="instead of each preset's")
    parser.add_argument("--log", type=Path, help="raw log (default on a GPU: bench/logs/gpu_costs_<size>.log)")
    args = parser.parse_args()
    override = {k: getattr(args, k) for k in ("attention", "quantization") if getattr(args, k)}
    # FP8 quantizes the models in place: the presets without it are measured first.
    order = sorted(
        dict.fromkeys(args.preset), key=lambda p: preset_backends(p)["propagator"].get("quantization") == "fp8"
    )
    presets = {p: {s: {**spec, **override} for s, spec in preset_backends(p).items() if spec} for p in order}
    log_path = args.log or (LOGS / f"gpu_costs_{args.size}.log" if args.device.startswith("cuda") else None)
    if log_path:
        log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("a") if log_path else contextlib.nullcontext() as log:
        bench = Bench(args, log)
        bench.say(
            f"# {time.strftime('%Y-%m-%d %H:%M:%S')} {device_name(args.device)}, torch {torch.__version__}, "
            f"{args.dtype}, size {args.size} (clip {bench.clip}), presets {', '.join(order)}, repeats {args.repeats}"
        )
        runs = {
            "propagate": lambda: bench_wan(bench, presets, vace=True),
            "enhance": lambda: bench_wan(bench, presets, vace=False),
            "edit": lambda: bench_editor(bench, presets),
            "judge": lambda: bench_judge(bench),
        }
        for stage in args.stage:
            runs[stage]()
            free(bench)  # the stage's models went with its frame


if __name__ == "__main__":
    main()
