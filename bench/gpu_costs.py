"""Seconds per call, MFU and peak GPU memory of the expensive stages of a preset, to replace bench/flops.py's
assumed rates with measured ones (bench/RESULTS.md): propagation (Wan2.1-VACE-14B), the enhancer (Wan2.1-T2V-14B),
the key-frame editor (Qwen-Image-Edit) and the video judge (Qwen2.5-VL-7B), the real diffusers/transformers
classes at their released configs' sizes with random weights, each prepared by the product's own code with the
preset's settings (configs/<preset>.yaml: steps, CFG passes, FP8, attention kernel, the VAE's dtype).

For the two Wan stages, every part a call does is timed `--repeats` times after a warm-up, its inputs made on the
device before the clock starts: the text encoder (512 UMT5 tokens per prompt), one transformer pass (times the
passes a call runs: steps x 2 under CFG), and the VAE's encodes and decode as the product's pipelines do them
(VACE encodes the control video and the reference frame, the control's blank half once per shape:
models/wan_vace.WanVACEFullMaskPipeline; the enhancer only decodes where the preset hands it the propagation's
latents, bench/stages.hands_latents, else it encodes the video too). Then the whole call, timed as the backend
makes it (models/wan_vace.generate_video; models/wan_enhance.enhance_latents, or enhance_video where nothing is
handed: the diffusers pipeline with its scheduler, text encoder, host-device copies and pre/post-processing),
`--call-repeats` times, beside the sum of its parts.
The editor: one transformer pass and its VAE; the judge: one whole generate (vision tower, prefill, the answer's
tokens; random tokens, never stopping early, without the grammar mask, which bench/decoding.py measures).

MFU is given per kind of work against its own peak (flops_models.yaml): a transformer pass is profiled once and
its time split by operator into FP8 matmuls (torchao's _scaled_mm, against the FP8 peak), bf16 matmuls (against
the bf16 peak) and attention (against the bf16 peak; SageAttention also against its published 882 TFLOP/s);
the VAE against the peak of its dtype (float32 convolutions run as TF32); the judge's generate against its
decode bound. Peak memory: the most the stage held, weights included. One preset and one stage per device call:

    python -m bench.gpu_costs --preset fast --stage propagate --size 720p        # ~4 minutes on an H100
    python -m bench.gpu_costs --preset paper --stage propagate --size 720p --repeats 2 --call-repeats 0
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
from functools import partial
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import torch

from bench.meta_flops import (
    MODELS,
    TRANSFORMERS,
    VACE_LAYERS,
    Flops,
    config,
    qwen_image_forward,
    qwen_image_vae,
    qwen_vl_call,
    t5_encoder,
    vl_grid,
    wan_forward,
    wan_vae_decode,
    wan_vae_encode,
)
from bench.stages import TOKENS, hands_latents, preset_backends, prompt_tokens, qwen_image_size, wan_latent_frames
from models.frames import torch_dtype
from models.pipelines import quantize_fp8, set_attention
from models.wan_enhance import enhance_latents, enhance_video
from models.wan_vace import WanVACEFullMaskPipeline, depth_control, generate_video, prepare_wan_pipeline

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
WAN_VAE_TINY = {"base_dim": 3, "z_dim": 16, "dim_mult": [1, 1, 1, 1], "num_res_blocks": 1}  # as models/tiny.py
LOGS = Path(__file__).parent / "logs"
# Operators by the kind of work they do, for MFU against each kind's own peak. Attention is the larger of its
# operator's time and its kernels' (SageAttention's CUDA kernels run outside any aten operator).
FP8_OPS = ("_scaled_mm",)
MATMUL_OPS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::matmul", "aten::linear")
ATTENTION_OPS = ("scaled_dot_product",)
ATTENTION_KERNELS = ("attn", "sage", "fmha", "flash")


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
        self.call_repeats, self.size = args.call_repeats, args.size
        self.clip, self.keyframe, self.edit_side, self.vl_frames = SIZES[args.size]
        self.gpu = next((d for d in MODELS["devices"] if d.split()[0] in device_name(self.device)), None)
        self.cuda = self.device.startswith("cuda")

    @property
    def real(self) -> bool:
        return self.size != "tiny"

    def say(self, line: str) -> None:
        sys.stdout.write(line + "\n")
        if self.log:
            self.log.write(line + "\n")
            self.log.flush()

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()

    def time(
        self, work: Callable[[], Any], repeats: int | None = None, warm_up: Callable[[], Any] | None = None
    ) -> Timing:
        """`warm_up` (default: `work` itself) once, then `repeats` timed calls; the peak of device memory."""
        with torch.inference_mode():
            (warm_up or work)()
            if self.cuda:
                torch.cuda.reset_peak_memory_stats()
            seconds = []
            for _ in range(self.repeats if repeats is None else repeats):
                self.sync()
                started = time.perf_counter()
                work()
                self.sync()
                seconds.append(time.perf_counter() - started)
        peak = torch.cuda.max_memory_allocated() / 2**30 if self.cuda else float("nan")
        return Timing(seconds, peak)

    def peak(self, kind: str) -> float | None:
        """The card's dense peak in TFLOP/s for a kind of work ('bf16', 'fp8', 'tf32'), None off a known GPU."""
        if self.gpu is None or not self.real:
            return None
        return MODELS["devices"][self.gpu][f"{kind}_tflops"]

    def mfu(self, flops: float, seconds: float, kind: str) -> str:
        peak = self.peak(kind)
        if peak is None or seconds <= 0:
            return "n/a"
        return f"{flops / seconds / 1e12:,.0f} TFLOP/s = {flops / seconds / (peak * 1e12):.0%} of {kind}"

    def report(self, preset: str, stage: str, part: str, t: Timing, note: str = "") -> None:
        runs = " ".join(f"{s:.3f}" for s in t.seconds)
        peak = f"  peak {t.peak_gib:6.1f} GiB" if self.cuda else ""
        self.say(f"{preset:<6} {stage:<17} {part:<46} runs [{runs}] s  mean {t.mean:8.3f} s{peak}  {note}".rstrip())

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

    def split_by_kind(self, work: Callable[[], Any]) -> dict[str, float]:
        """Seconds of one run of `work` by kind of operator (device time on a GPU, CPU time here)."""
        activities = [torch.profiler.ProfilerActivity.CPU]
        if self.cuda:
            activities.append(torch.profiler.ProfilerActivity.CUDA)
        with torch.inference_mode(), torch.profiler.profile(activities=activities) as prof:
            work()
            self.sync()
        kinds = {"fp8 matmul": 0.0, "bf16 matmul": 0.0, "attention op": 0.0, "attention kernels": 0.0}
        for row in prof.key_averages():
            name = row.key
            spent = (row.self_device_time_total if self.cuda else row.self_cpu_time_total) / 1e6
            if any(op in name for op in FP8_OPS):
                kinds["fp8 matmul"] += spent
            elif any(op in name for op in ATTENTION_OPS):
                kinds["attention op"] += spent
            elif name in MATMUL_OPS:
                kinds["bf16 matmul"] += spent
            elif not name.startswith("aten::") and any(k in name.lower() for k in ATTENTION_KERNELS):
                kinds["attention kernels"] += spent
        attention = max(kinds.pop("attention op"), kinds.pop("attention kernels"))
        return {**kinds, "attention": attention}


def device_name(device: str) -> str:
    return torch.cuda.get_device_name(torch.device(device)) if device.startswith("cuda") else device


def prepared(bench: Bench, model: torch.nn.Module, spec: dict[str, Any], step: str) -> str:
    """The preset's attention kernel and FP8 on the denoiser, by the functions the backends prepare it with (a
    fused LoRA costs nothing, so none is loaded); what runs, in words."""
    runs = set_attention(model, spec.get("attention", "native"), step, bench.device)
    fp8 = spec.get("quantization") == "fp8"
    if fp8:
        quantize_fp8(model, bench.device, step)
    return f"{runs}{', FP8' if fp8 else ''}"


def pass_mfu(bench: Bench, flops: Flops, work: Callable[[], Any], attention: str) -> str:
    """MFU of one transformer pass per kind of work, each against its own peak (one more pass, profiled)."""
    if bench.peak("bf16") is None:
        return "MFU n/a"
    split = bench.split_by_kind(work)
    bf16 = flops.total - flops.fp8 - flops.attention
    parts = [f"FP8 matmuls {bench.mfu(flops.fp8, split['fp8 matmul'], 'fp8')}"] if flops.fp8 else []
    parts.append(f"bf16 matmuls {bench.mfu(bf16, split['bf16 matmul'], 'bf16')}")
    parts.append(f"attention ({attention}) {bench.mfu(flops.attention, split['attention'], 'bf16')}")
    if attention == "sage" and split["attention"] > 0:
        rate = flops.attention / split["attention"] / 1e12
        parts.append(f"{rate / MODELS['achieved']['sage_attention_tflops']:.0%} of SageAttention2's published rate")
    return "MFU: " + "; ".join(parts)


# --- Wan: propagation and the enhancer ---------------------------------------------------------------------


def wan_pipeline(bench: Bench, vace: bool, spec: dict[str, Any]) -> Any:
    """The diffusers pipeline at the released configs' sizes (tiny ones at --size tiny), random weights, on the
    device: the transformer and UMT5 text encoder in --dtype, the VAE in the preset's dtype, the scheduler the
    checkpoints ship (UniPC, flow prediction) at the preset's shift."""
    from diffusers import (
        AutoencoderKLWan,
        UniPCMultistepScheduler,
        WanTransformer3DModel,
        WanVACETransformer3DModel,
        WanVideoToVideoPipeline,
    )
    from transformers import UMT5Config, UMT5EncoderModel

    from models.tiny import TINY_T5, t5_tokenizer

    model = "vace-14b" if bench.real else "tiny"
    tokenizer = t5_tokenizer()  # offline; the encoder is real size, so the 512 padded tokens cost what they do
    text = config("umt5_xxl") if bench.real else {**TINY_T5, "vocab_size": len(tokenizer)}
    if vace:
        vace_config = {**TRANSFORMERS[model], "vace_in_channels": 96, "vace_layers": VACE_LAYERS[model]}
        transformer = bench.built(lambda: WanVACETransformer3DModel(**vace_config))
    else:
        transformer = bench.built(lambda: WanTransformer3DModel(**TRANSFORMERS[model]))
    vae_dtype = spec.get("vae_dtype", "float32") if bench.dtype != torch.float32 else "float32"
    cls = WanVACEFullMaskPipeline if vace else WanVideoToVideoPipeline
    pipe = cls(
        tokenizer=tokenizer,
        text_encoder=bench.built(lambda: UMT5EncoderModel(UMT5Config(**text))),
        transformer=transformer,
        vae=bench.built(lambda: AutoencoderKLWan(**({} if bench.real else WAN_VAE_TINY)), torch_dtype(vae_dtype)),
        scheduler=UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0),
    )
    prepare_wan_pipeline(pipe, vae_dtype, spec.get("flow_shift"))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def bench_wan(bench: Bench, preset: str, spec: dict[str, Any], vace: bool, handed: bool = False) -> None:
    """One Wan stage; `handed`: the enhancer starts from the propagation's latents (no encode)."""
    step, stage = ("propagator", "propagate") if vace else ("enhancer", "enhance_temporal")
    model = "vace-14b" if bench.real else "tiny"
    height, width, frames = bench.clip
    latent = wan_latent_frames(frames) + vace  # VACE's reference frame rides along in time
    cfg_scale = spec["guidance_scale"]
    cfg = cfg_scale > 1
    steps = spec["steps"] if vace else int(spec["steps"] * spec["strength"])
    passes = steps * (2 if cfg else 1)
    pipe = wan_pipeline(bench, vace, spec)
    what = prepared(bench, pipe.transformer, spec, step)
    vae = pipe.vae
    vae_dtype = str(vae.dtype).removeprefix("torch.")
    calls = f"{passes} transformer pass{'es' if passes > 1 else ''} a call"
    bench.say(f"{preset:<6} {stage:<17} {what}, VAE in {vae_dtype}, {calls}")

    # 1. The text encoder, once per prompt (twice under CFG), as the pipeline calls it.
    prompt = {"prompt": "a video", "max_sequence_length": 512, "device": bench.device}
    text = bench.time(lambda: pipe.encode_prompt(**prompt, do_classifier_free_guidance=cfg))
    text_flops = (2 if cfg else 1) * t5_encoder("umt5_xxl", TOKENS["wan_text"]) if bench.real else 0.0
    bench.report(preset, stage, "text encoder (UMT5, 512 tokens)", text, bench.mfu(text_flops, text.mean, "bf16"))

    # 2. One transformer pass.
    with torch.inference_mode():
        embeds = pipe.encode_prompt(**prompt, do_classifier_free_guidance=False)[0]
    inputs = {
        "hidden_states": bench.randn(1, 16, latent, height // 8, width // 8),
        "timestep": torch.full((1,), 500.0, device=bench.device),
        "encoder_hidden_states": embeds,
        "return_dict": False,
    }
    if vace:
        inputs["control_hidden_states"] = bench.randn(1, 96, latent, height // 8, width // 8)
    transformer = pipe.transformer
    one = bench.time(lambda: transformer(**inputs))
    flops = wan_forward(model, latent, height, width, vace).run_in(spec.get("quantization", "none"))
    mfu = pass_mfu(bench, flops, lambda: transformer(**inputs), what.split(",")[0])
    bench.report(preset, stage, f"transformer pass ({what})", one, mfu)

    # 3. The VAE as a call runs it once under way: VACE's control video and reference frame encoded (its blank
    # half is cached), the enhancer's video encoded unless it is handed the latents; the result decoded. Warmed up
    # on 5 frames (at 720p a clip takes seconds).
    video = bench.randn(1, 3, frames, height, width, dtype=vae.dtype)
    latents = bench.randn(1, 16, wan_latent_frames(frames), height // 8, width // 8, dtype=vae.dtype)
    encodes = 0 if handed else 1

    def coding() -> None:
        for _ in range(encodes):
            vae.encode(video).latent_dist.mode()
        if vace:
            vae.encode(video[:, :, :1]).latent_dist.mode()
        vae.decode(latents)

    coded = bench.time(coding, warm_up=lambda: vae.decode(vae.encode(video[:, :, :5]).latent_dist.mode()))
    vae_flops = encodes * wan_vae_encode(frames, height, width) + wan_vae_decode(
        wan_latent_frames(frames), height, width
    )
    vae_flops += wan_vae_encode(1, height, width) if vace else 0.0
    kind = "tf32" if vae.dtype == torch.float32 else "bf16"
    part = "VAE encodes + decode" if vace else "VAE encode + decode" if encodes else "VAE decode (latents handed on)"
    bench.report(preset, stage, part, coded, bench.mfu(vae_flops.total, coded.mean, kind))

    # 4. The whole call as the backend makes it, beside the sum of its parts.
    parts = text.mean + passes * one.mean + coded.mean
    if bench.call_repeats:
        clip = np.random.default_rng(0).integers(0, 256, (frames, height, width, 3), dtype=np.uint8)
        if vace:
            control = depth_control(clip[..., 0].astype(np.float32) / 255, 1.0)
            call = partial(generate_video, pipe, control, clip[0], "a video", "", spec["steps"], cfg_scale, 0)
            device = pipe._execution_device
            blank = torch.zeros(1, 3, frames, height, width, dtype=vae.dtype, device=device)
            with torch.inference_mode():  # the blank half cached, as a run's first call leaves it
                pipe.blank_part_latents(blank, None, device)
        elif handed:
            start = bench.randn(1, 16, wan_latent_frames(frames), height // 8, width // 8, dtype=torch.float32)
            call = partial(enhance_latents, pipe, start, "", spec["steps"], spec["strength"], cfg_scale, 0)
        else:
            call = partial(enhance_video, pipe, clip, "", spec["steps"], spec["strength"], cfg_scale, 0)
        whole = bench.time(call, repeats=bench.call_repeats, warm_up=lambda: None)  # the parts warmed it up
        note = f"sum of parts {parts:.2f} s: {whole.mean - parts:+.2f} s outside them"
        bench.report(preset, stage, "whole call (the backend's pipeline call)", whole, note)
    else:
        bench.say(f"{preset:<6} {stage:<17} {'sum of the parts a call runs':<46} {parts:8.2f} s (whole call not run)")


# --- the key-frame editor and the video judge ----------------------------------------------------------------


def bench_editor(bench: Bench, preset: str, spec: dict[str, Any]) -> None:
    from diffusers import AutoencoderKLQwenImage, QwenImageTransformer2DModel

    if spec["kind"] != "qwen_image_edit":
        bench.say(f"{preset:<6} edit_keyframe     {spec['kind']} is not measured here (Qwen-Image-Edit only)")
        return
    cfg = config("qwen_image_transformer") if bench.real else QWEN_IMAGE_TINY
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
    what = prepared(bench, transformer, spec, "editor")
    one = bench.time(lambda: transformer(**inputs))
    passes = spec["steps"] * (2 if spec.get("true_cfg_scale", 4.0) > 1 else 1)
    flops = qwen_image_forward(height, width, text).run_in(spec.get("quantization", "none")) if bench.real else Flops(0)
    mfu = pass_mfu(bench, flops, lambda: transformer(**inputs), what.split(",")[0])
    bench.report(preset, "edit_keyframe", f"transformer pass ({what}) x {passes}", one, mfu)
    vae = bench.built(lambda: AutoencoderKLQwenImage(**({} if bench.real else QWEN_IMAGE_VAE_TINY)))
    image = bench.randn(1, 3, 1, height, width)
    coded = bench.time(lambda: vae.decode(vae.encode(image).latent_dist.mode()))
    vae_flops = qwen_image_vae(height, width).total if bench.real else 0.0
    bench.report(preset, "edit_keyframe", "VAE encode + decode", coded, bench.mfu(vae_flops, coded.mean, "bf16"))
    parts = passes * one.mean + coded.mean
    bench.say(f"{preset:<6} {'edit_keyframe':<17} {'passes x pass + VAE (text encoder not timed)':<46} {parts:8.2f} s")


def bench_judge(bench: Bench) -> None:
    """The video judge's generate on two clips of `vl_frames` frames (the same for every preset)."""
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    if bench.real:
        cfg = Qwen2_5_VLConfig(**config("qwen2_5_vl_7b"))
    else:
        from models.tiny import qwen2_5_vl

        cfg = qwen2_5_vl()[0].config
    model = bench.built(lambda: Qwen2_5_VLForConditionalGeneration(cfg))
    grid = vl_grid(*bench.clip[:2], bench.vl_frames, 448 * 448 if bench.real else 28 * 28 * 16)
    t, h, w = grid
    text, answer = prompt_tokens("judge_video.j2"), TOKENS["judge_video_answer"] if bench.real else 8
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
    rate = MODELS["achieved"]["decode_tokens_per_s"]
    note = f"{answer / timing.mean:.1f} tokens/s over the call (priced at {rate} for the answer alone)"
    if bench.real:
        flops, decode_bytes = qwen_vl_call([grid, grid], text, answer)
        note += f"; prefill {flops.total - flops.decode:.3g} FLOPs, decode reads {decode_bytes / 1e9:,.0f} GB"
    bench.report(
        "every", "judge_video", f"generate: 2 videos x {bench.vl_frames} frames, {answer} tokens", timing, note
    )


def free(bench: Bench) -> None:
    gc.collect()
    if bench.cuda:
        torch.cuda.empty_cache()


STAGES = ("propagate", "enhance", "edit", "judge")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", nargs="+", choices=["paper", "fast", "fast_480p", "full"], default=["fast"])
    parser.add_argument("--size", choices=sorted(SIZES), default="720p")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each part, after one warm-up")
    parser.add_argument("--call-repeats", type=int, default=1, help="timed whole calls (0: none), after the parts")
    parser.add_argument("--stage", nargs="+", choices=STAGES, default=list(STAGES))
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--attention", choices=["native", "flash", "sage"], help="instead of each preset's")
    parser.add_argument("--quantization", choices=["none", "fp8"], help="instead of each preset's")
    parser.add_argument("--log", type=Path, help="raw log (default on a GPU: bench/logs/gpu_costs_<size>.log)")
    args = parser.parse_args()
    override = {k: getattr(args, k) for k in ("attention", "quantization") if getattr(args, k)}
    presets = {p: {s: {**spec, **override} for s, spec in preset_backends(p).items() if spec} for p in args.preset}
    log_path = args.log or (LOGS / f"gpu_costs_{args.size}.log" if args.device.startswith("cuda") else None)
    if log_path:
        log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("a") if log_path else contextlib.nullcontext() as log:
        bench = Bench(args, log)
        bench.say(
            f"# {time.strftime('%Y-%m-%d %H:%M:%S')} {device_name(args.device)}, torch {torch.__version__}, "
            f"{args.dtype}, size {args.size} (clip {bench.clip}), presets {', '.join(presets)}, "
            f"repeats {args.repeats}, call repeats {args.call_repeats}"
        )
        for stage in args.stage:
            started = time.perf_counter()
            if stage == "judge":
                bench_judge(bench)
            for preset, specs in presets.items() if stage != "judge" else ():
                if stage == "edit":
                    bench_editor(bench, preset, specs["editor"])
                else:
                    vace = stage == "propagate"
                    spec = specs["propagator" if vace else "enhancer"]
                    bench_wan(bench, preset, spec, vace, handed=not vace and hands_latents(specs))
                free(bench)  # the stage's models went with its frame
            bench.say(f"# {stage}: {time.perf_counter() - started:.0f} s")
            free(bench)


if __name__ == "__main__":
    main()
