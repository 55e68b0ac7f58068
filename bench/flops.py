"""FLOPs per call of every neural stage at real size, counted without a GPU: each real diffusers/transformers
class is built from its published config (bench/flops_models.yaml) on PyTorch's meta device and run once
under torch.utils.flop_counter.FlopCounterMode. Nothing is allocated; the whole table takes about a minute.

What is counted, per call of a stage:
- every transformer/denoiser forward, exactly, at the stage's token counts (steps x CFG passes);
- the VAE encodes and decode the pipeline does, and its text encoder once per prompt (UMT5-XXL, T5-XXL + CLIP-L,
  or Qwen2.5-VL for Qwen-Image-Edit), at the sequence lengths our prompts produce;
- Qwen2.5-VL: vision tower + language-model prefill, then the answer's decode. Decode at batch 1 reads every
  weight once per token, so its floor is memory bandwidth, not FLOPs: `decode GB` is added at the HBM rate.
Not counted: schedulers, pre/post-processing on the CPU, host-device copies, elementwise glue the counter
ignores. The lowest GPU-seconds are FLOPs / bf16 dense peak (+ decode bytes / HBM bandwidth); the MFU column
divides them by --mfu. `bench/costs.yaml` gets the MFU figures, per tool of the graph, for bench/policy.py.

    python -m bench.flops                 # table + bench/costs.yaml, at MFU 0.4
    python -m bench.flops --mfu 0.3 --costs /tmp/costs.yaml
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from bench.meta_flops import (
    MODELS,
    TOKENS,
    depth_frame,
    editto_train_step,
    flux_encoders_and_vae,
    flux_forward,
    qwen_image_forward,
    qwen_image_vae,
    qwen_vl_call,
    t5_encoder,
    vl_grid,
    wan_forward,
    wan_vae_decode,
    wan_vae_encode,
)
from prompts.loader import PromptBook

# Clip sizes (height, width, frames) and key-frame sizes (height, width) per setting.
SETTINGS = {
    "ours": {"clip": (480, 832, 81), "keyframe": (468, 832)},  # configs/full.yaml: 832 max side, 81 frames
    "paper": {"clip": (720, 1280, 101), "keyframe": (720, 1280)},  # Ditto-1M: 1280x720, 101 frames, 20 fps
}
EDITTO = (480, 832, 73)  # the released Editto training script's size
EXAMPLE_EDIT = {
    "instruction": "Turn the whole scene into a watercolour painting with soft washes of colour",
    "target_description": "A watercolour painting of the same scene, soft washes of colour, paper texture, "
    "the same people and motion as the source",
    "category": "global_style",
    "local": False,
    "num_frames": 81,
    "fps": 16,
}


def prompt_tokens(template: str) -> int:
    variables = PromptBook(None).source(template).text.split("#}")[0]  # the '{# vars: ... #}' header
    text = PromptBook(None).render(template, **{k: v for k, v in EXAMPLE_EDIT.items() if k in variables}).text
    return len(text) // TOKENS["chars_per_token"] + TOKENS["chat_overhead"]


# --- stages -----------------------------------------------------------------------------------------------


@dataclass
class Stage:
    tool: str  # the graph's tool this stage is a call of
    name: str  # the model and its settings
    setting: str
    flops: float
    decode_bytes: float = 0.0
    default: bool = True  # what configs/full.yaml runs; alternatives are listed for comparison


def propagate(model: str, clip: tuple[int, int, int], steps: int, cfg: float, reference: bool = True) -> float:
    height, width, frames = clip
    passes = 2 if cfg > 1 else 1
    latent = wan_latent_frames(frames)
    transformer = steps * passes * wan_forward(model, latent + reference, height, width, True)
    encode = 2 * wan_vae_encode(frames, height, width) + reference * wan_vae_encode(1, height, width)
    return transformer + encode + wan_vae_decode(latent, height, width) + passes * t5_encoder("umt5_xxl", 512)


def enhance(clip: tuple[int, int, int], steps: int = 40, strength: float = 0.1, cfg: float = 3.0) -> float:
    height, width, frames = clip
    latent, passes = wan_latent_frames(frames), 2 if cfg > 1 else 1
    transformer = round(steps * strength) * passes * wan_forward("vace-14b", latent, height, width, False)
    coding = wan_vae_encode(frames, height, width) + wan_vae_decode(latent, height, width)
    return transformer + coding + passes * t5_encoder("umt5_xxl", 512)


def edit_qwen_image(keyframe: tuple[int, int], steps: int = 50) -> tuple[float, float]:
    height, width = qwen_image_size(*keyframe)
    vl_tokens = TOKENS["chat_overhead"] + TOKENS["qwen_image_template_drop"] + TOKENS["instruction"]
    grid = vl_grid(height, width, 1, 12845056)  # the pipeline's processor allows up to 12.8 MP
    encoder_flops, _ = qwen_vl_call([grid], vl_tokens, 0)
    text = grid[1] * grid[2] // 4 + vl_tokens - TOKENS["qwen_image_template_drop"]
    # True CFG: the negative prompt is encoded with the image too, and every step runs twice.
    return 2 * encoder_flops + steps * 2 * qwen_image_forward(height, width, text) + qwen_image_vae(height, width), 0.0


def stages() -> list[Stage]:
    out: list[Stage] = []
    for setting, sizes in SETTINGS.items():
        clip, keyframe = sizes["clip"], sizes["keyframe"]
        kf = vl_grid(*keyframe, 1, 448 * 448)
        video = vl_grid(*clip[:2], 16, 448 * 448)
        add = out.append
        add(
            Stage(
                "caption_clip",
                "Qwen2.5-VL-7B caption, 16 frames",
                setting,
                *qwen_vl_call([video], prompt_tokens("caption_clip.j2"), TOKENS["caption_answer"]),
            )
        )
        add(Stage("edit_keyframe", "Qwen-Image-Edit ~1 MP, 50 steps, true CFG 4", setting, *edit_qwen_image(keyframe)))
        fh, fw = flux_size(*keyframe)
        add(
            Stage(
                "edit_keyframe",
                "FLUX.1 Kontext 1024 px, 28 steps",
                setting,
                28 * flux_forward(fh, fw) + flux_encoders_and_vae(fh, fw),
                default=False,
            )
        )
        add(
            Stage(
                "judge_keyframe",
                "Qwen2.5-VL-7B, 2 images",
                setting,
                *qwen_vl_call([kf, kf], prompt_tokens("judge_keyframe.j2"), TOKENS["judge_keyframe_answer"]),
            )
        )
        add(
            Stage(
                "estimate_depth",
                f"Depth Anything V2 Large, {clip[2]} frames",
                setting,
                clip[2] * depth_frame(*clip[:2]),
            )
        )
        for model in ("vace-14b", "vace-1.3b"):
            for steps, cfg in ((4, 1.2), (50, 5.0)):
                add(
                    Stage(
                        "propagate",
                        f"Wan2.1-{model.upper()} {steps} steps CFG {cfg:g}",
                        setting,
                        propagate(model, clip, steps, cfg),
                        default=(model, steps) == ("vace-14b", 4),
                    )
                )
        add(Stage("enhance_temporal", "Wan T2V 14B, last 4 of 40 steps, CFG 3", setting, enhance(clip)))
        add(
            Stage(
                "judge_video",
                "Qwen2.5-VL-7B, 2 videos x 16 frames",
                setting,
                *qwen_vl_call([video, video], prompt_tokens("judge_video.j2"), TOKENS["judge_video_answer"]),
            )
        )
    height, width, frames = EDITTO
    latent = wan_latent_frames(frames) + 1  # with the reference frame, as the curriculum starts
    step = editto_train_step("vace-14b", latent, height, width)
    coding = 3 * wan_vae_encode(frames, height, width) + wan_vae_encode(1, height, width)
    out.append(
        Stage(
            "train_editto", "VACE-14B one step fwd+bwd, 480x832x73", "ours", step + coding + t5_encoder("umt5_xxl", 512)
        )
    )
    for steps, cfg in ((4, 1.2), (50, 5.0)):
        out.append(
            Stage(
                "edit_with_editto",
                f"Editto (VACE-14B) {steps} steps CFG {cfg:g}, 480x832x73",
                "ours",
                propagate("vace-14b", EDITTO, steps, cfg, reference=False),
                default=steps == 4,
            )
        )
    return out


def wan_latent_frames(frames: int) -> int:
    return (frames - 1) // 4 + 1  # Wan's VAE: 4x in time, first frame alone


def qwen_image_size(height: int, width: int) -> tuple[int, int]:
    from diffusers.pipelines.qwenimage.pipeline_qwenimage_edit import calculate_dimensions

    w, h, _ = calculate_dimensions(1024 * 1024, width / height)  # the pipeline's working size
    return h, w


def flux_size(height: int, width: int, max_side: int = 1024) -> tuple[int, int]:
    scale = max_side / max(height, width)  # FluxKontextEditor's working size
    return round(height * scale / 16) * 16, round(width * scale / 16) * 16


def lowest_seconds(stage: Stage, device: str) -> float:
    """FLOPs at the bf16 dense peak, plus the decode's weight reads at full HBM bandwidth."""
    spec = MODELS["devices"][device]
    return stage.flops / (spec["bf16_tflops"] * 1e12) + stage.decode_bytes / (spec["hbm_tb_s"] * 1e12)


def write_costs(path: Path, table: list[Stage], device: str, mfu: float) -> None:
    """Seconds per call of each graph tool (the default choice of each stage), per setting, at the MFU."""
    per_tool: dict[str, dict[str, float]] = {}
    for s in table:
        if s.default:
            per_tool.setdefault(s.setting, {})[s.tool] = round(lowest_seconds(s, device) / mfu, 2)
    per_tool["paper"].update({k: v for k, v in per_tool["ours"].items() if k not in per_tool["paper"]})
    header = (
        f"# Written by `python -m bench.flops --mfu {mfu}`: GPU-seconds per call of each tool on one {device},\n"
        f"# FLOP bound / MFU {mfu}. 'ours' is configs/full.yaml (480x832, 81 frames), 'paper' is 1280x720, 101\n"
        "# frames (Editto's rows are at 480x832x73 in both). Tools absent here hold no GPU (ingest, the planner).\n"
    )
    body = {"device": device, "mfu": mfu, "seconds_per_call": per_tool}
    path.write_text(header + yaml.safe_dump(body, sort_keys=False))


def print_table(table: list[Stage], mfu: float) -> None:
    devices = list(MODELS["devices"])
    out = sys.stdout
    out.write(
        f"| setting | tool | stage | TFLOPs/call | decode GB | {' | '.join(f'{d} lowest s' for d in devices)} "
        f"| H100 s at MFU {mfu:g} |\n|{' --- |' * (6 + len(devices))}\n"
    )
    for s in table:
        lowest = " | ".join(f"{lowest_seconds(s, d):.2f}" for d in devices)
        mark = "" if s.default else " (alt.)"
        out.write(
            f"| {s.setting} | {s.tool}{mark} | {s.name} | {s.flops / 1e12:,.1f} | {s.decode_bytes / 1e9:,.0f} "
            f"| {lowest} | {lowest_seconds(s, devices[0]) / mfu:,.1f} |\n"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mfu", type=float, default=0.4, help="assumed model FLOPs utilisation (0-1]")
    parser.add_argument(
        "--costs", type=Path, default=Path(__file__).parent / "costs.yaml", help="where to write seconds per call"
    )
    args = parser.parse_args()
    started = time.perf_counter()
    table = stages()
    print_table(table, args.mfu)
    write_costs(args.costs, table, next(iter(MODELS["devices"])), args.mfu)
    sys.stdout.write(f"\ncounted in {time.perf_counter() - started:.0f} s; wrote {args.costs}\n")


if __name__ == "__main__":
    main()
