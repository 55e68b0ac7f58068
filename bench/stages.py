"""Every neural stage of a preset as the graph calls it, with its FLOPs per call: each stage reads its settings
from the preset's own config file (configs/<preset>.yaml over the full profile), so the count follows what
the preset runs. For bench/flops.py."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from agent.config import load_config
from bench.meta_flops import (
    TOKENS,
    Flops,
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
from models.protocols import LOCAL_CATEGORIES
from prompts.loader import PromptBook

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
PRESETS = ("paper", "fast")
# Clip sizes (height, width, frames), key-frame sizes (height, width), the key-frame editors' working area
# (Qwen-Image-Edit's pipeline works at ~1 MP, FluxKontextEditor at 1024 px on the longer side) and the frames
# Qwen2.5-VL sees of a video (models/qwen_vl.py samples 16), per setting.
SETTINGS: dict[str, dict[str, Any]] = {
    "ours": {"clip": (480, 832, 81), "keyframe": (468, 832), "edit_side": 1024, "vl_frames": 16},
    "paper": {"clip": (720, 1280, 101), "keyframe": (720, 1280), "edit_side": 1024, "vl_frames": 16},  # Ditto-1M
    # --quick: every code path at tiny sizes on models cut to a layer or two (flops_models.yaml `quick`)
    "tiny": {"clip": (32, 64, 9), "keyframe": (32, 64), "edit_side": 64, "vl_frames": 2, "quick": True},
}
EDITTO = (480, 832, 73)  # the released Editto training script's size
EXAMPLE_EDIT = {
    "instruction": "Turn the whole scene into a watercolour painting with soft washes of colour",
    "target_description": "A watercolour painting of the same scene, soft washes of colour, paper texture, "
    "the same people and motion as the source",
    "category": "global_style",
    "local": "global_style" in LOCAL_CATEGORIES,
    "num_frames": 81,
    "fps": 16,
    "frames_shown": 0,  # the in-process Qwen2.5-VL sees a video whole
}
# Alternatives counted beside each preset's choice (spec overrides of the stage's backend).
ALTERNATIVES: dict[str, dict[str, list[dict[str, Any]]]] = {
    "paper": {
        "editor": [{"kind": "flux_kontext", "steps": 28}],
        "propagator": [
            {"steps": 50, "guidance_scale": 5.0},
            {"path": "Wan2.1-VACE-1.3B-diffusers"},
            {"path": "Wan2.1-VACE-1.3B-diffusers", "steps": 50, "guidance_scale": 5.0},
        ],
    },
    "fast": {
        "editor": [{"kind": "flux_kontext", "steps": 28, "quantization": "fp8"}],
        "propagator": [{"quantization": "none"}],
        # The paper's enhancer schedule (last 4 of 40, shift 12) at CFG 1 with the LoRA.
        "enhancer": [{"steps": 40, "strength": 0.1, "flow_shift": 12.0}],
    },
}


@dataclass
class Stage:
    tool: str  # the graph's tool this stage is a call of
    name: str  # the model and its settings
    setting: str
    flops: Flops
    decode_bytes: float = 0.0
    default: bool = True  # what the preset runs; alternatives are listed for comparison


@cache
def preset_backends(preset: str) -> dict[str, dict[str, Any]]:
    """The preset's backend specs, validated as a run validates them."""
    return load_config("full", CONFIGS / f"{preset}.yaml").backends.model_dump()


def prompt_tokens(template: str) -> int:
    book = PromptBook(None)
    variables = book.source(template).text.split("#}")[0]  # the '{# vars: ... #}' header
    text = book.render(template, **{k: v for k, v in EXAMPLE_EDIT.items() if k in variables}).text
    return len(text) // TOKENS["chars_per_token"] + TOKENS["chat_overhead"]


def wan_latent_frames(frames: int) -> int:
    return (frames - 1) // 4 + 1  # Wan's VAE: 4x in time, first frame alone


def wan_size(path: str, quick: bool = False) -> str:
    return "tiny" if quick else "vace-1.3b" if "1.3B" in path else "vace-14b"


def passes(guidance: float) -> int:
    return 2 if guidance > 1 else 1  # diffusers runs CFG (a second, unconditional pass) only above 1


def fp8_mark(spec: dict[str, Any]) -> str:
    return ", FP8" if spec.get("quantization") == "fp8" else ""


def propagate(spec: dict[str, Any], sizes: dict[str, Any], reference: bool = True) -> Flops:
    height, width, frames = sizes["clip"]
    n, quick = passes(spec["guidance_scale"]), sizes.get("quick", False)
    latent = wan_latent_frames(frames)
    forward = wan_forward(wan_size(spec["path"], quick), latent + reference, height, width, True)
    transformer = (spec["steps"] * n * forward).run_in(spec.get("quantization", "none"))
    encode = 2 * wan_vae_encode(frames, height, width) + reference * wan_vae_encode(1, height, width)
    text = n * t5_encoder("umt5_xxl", TOKENS["wan_text"], quick)
    return transformer + encode + wan_vae_decode(latent, height, width) + text


def propagate_name(spec: dict[str, Any]) -> str:
    model = "1.3B" if wan_size(spec["path"]) == "vace-1.3b" else "14B"
    return f"Wan2.1-VACE-{model} {spec['steps']} steps CFG {spec['guidance_scale']:g}{fp8_mark(spec)}"


def enhance(spec: dict[str, Any], sizes: dict[str, Any]) -> Flops:
    height, width, frames = sizes["clip"]
    latent, n, quick = wan_latent_frames(frames), passes(spec["guidance_scale"]), sizes.get("quick", False)
    steps = int(spec["steps"] * spec["strength"])  # diffusers' video-to-video runs this many of the schedule
    forward = wan_forward(wan_size(spec["path"], quick), latent, height, width, False)
    transformer = (steps * n * forward).run_in(spec.get("quantization", "none"))
    coding = wan_vae_encode(frames, height, width) + wan_vae_decode(latent, height, width)
    return transformer + coding + n * t5_encoder("umt5_xxl", TOKENS["wan_text"], quick)


def enhance_name(spec: dict[str, Any]) -> str:
    run = int(spec["steps"] * spec["strength"])
    model = "1.3B" if wan_size(spec["path"]) == "vace-1.3b" else "14B"
    cfg = f"CFG {spec['guidance_scale']:g}{fp8_mark(spec)}"
    return f"Wan T2V {model}, last {run} of {spec['steps']} steps, {cfg}"


def qwen_image_size(height: int, width: int, side: int = 1024) -> tuple[int, int]:
    from diffusers.pipelines.qwenimage.pipeline_qwenimage_edit import calculate_dimensions

    w, h, _ = calculate_dimensions(side * side, width / height)  # the pipeline's working size
    return h, w


def flux_size(height: int, width: int, max_side: int = 1024) -> tuple[int, int]:
    scale = max_side / max(height, width)  # FluxKontextEditor's working size
    return round(height * scale / 16) * 16, round(width * scale / 16) * 16


def edit(spec: dict[str, Any], sizes: dict[str, Any]) -> Flops:
    quantization, quick = spec.get("quantization", "none"), sizes.get("quick", False)
    if spec["kind"] == "flux_kontext":  # guidance-distilled: one pass a step
        fh, fw = flux_size(*sizes["keyframe"], sizes["edit_side"])
        transformer = (spec["steps"] * flux_forward(fh, fw, quick)).run_in(quantization)
        return transformer + flux_encoders_and_vae(fh, fw, quick)
    height, width = qwen_image_size(*sizes["keyframe"], sizes["edit_side"])
    vl_tokens = TOKENS["chat_overhead"] + TOKENS["qwen_image_template_drop"] + TOKENS["instruction"]
    grid = vl_grid(height, width, 1, 12845056)  # the pipeline's processor allows up to 12.8 MP
    encoder_flops, _ = qwen_vl_call([grid], vl_tokens, 0, quick)
    text = grid[1] * grid[2] // 4 + vl_tokens - TOKENS["qwen_image_template_drop"]
    # True CFG (above 1): the negative prompt is encoded with the image too, and every step runs twice.
    n = 2 if spec.get("true_cfg_scale", 4.0) > 1 else 1
    transformer = (spec["steps"] * n * qwen_image_forward(height, width, text, quick)).run_in(quantization)
    return n * encoder_flops + transformer + qwen_image_vae(height, width)


def edit_name(spec: dict[str, Any]) -> str:
    if spec["kind"] == "flux_kontext":
        return f"FLUX.1 Kontext 1024 px, {spec['steps']} steps{fp8_mark(spec)}"
    cfg = spec.get("true_cfg_scale", 4.0)
    lora = " + Lightning LoRA" if spec.get("lora_path") else ""
    return f"Qwen-Image-Edit{lora} ~1 MP, {spec['steps']} steps, true CFG {cfg:g}{fp8_mark(spec)}"


STAGE_OF = {  # backend step -> (tool, FLOPs, name)
    "editor": ("edit_keyframe", edit, edit_name),
    "propagator": ("propagate", propagate, propagate_name),
    "enhancer": ("enhance_temporal", enhance, enhance_name),
}


def stages(preset: str, settings: tuple[str, ...] = ("ours", "paper"), alternatives: bool = True) -> list[Stage]:
    backends = preset_backends(preset)
    out: list[Stage] = []
    for setting in settings:
        sizes = SETTINGS[setting]
        clip, keyframe = sizes["clip"], sizes["keyframe"]
        kf = vl_grid(*keyframe, 1, 448 * 448)
        video = vl_grid(*clip[:2], sizes["vl_frames"], 448 * 448)
        quick = sizes.get("quick", False)
        caption = qwen_vl_call([video], prompt_tokens("caption_clip.j2"), TOKENS["caption_answer"], quick)
        frames = f"{sizes['vl_frames']} frames"
        out.append(Stage("caption_clip", f"Qwen2.5-VL-7B caption, {frames}", setting, Flops(caption[0]), caption[1]))
        for step in ("editor", "propagator", "enhancer"):
            tool, flops, name = STAGE_OF[step]
            out.append(Stage(tool, name(backends[step]), setting, flops(backends[step], sizes)))  # type: ignore[operator]
            for change in ALTERNATIVES[preset].get(step, []) if alternatives else []:
                spec = {**backends[step], **change}
                out.append(Stage(tool, name(spec), setting, flops(spec, sizes), default=False))  # type: ignore[operator]
        judge = qwen_vl_call([kf, kf], prompt_tokens("judge_keyframe.j2"), TOKENS["judge_keyframe_answer"], quick)
        out.append(Stage("judge_keyframe", "Qwen2.5-VL-7B, 2 images", setting, Flops(judge[0]), judge[1]))
        depth = clip[2] * depth_frame(*clip[:2], quick)
        out.append(Stage("estimate_depth", f"Depth Anything V2 Large, {clip[2]} frames", setting, Flops(depth)))
        judge = qwen_vl_call([video, video], prompt_tokens("judge_video.j2"), TOKENS["judge_video_answer"], quick)
        out.append(Stage("judge_video", f"Qwen2.5-VL-7B, 2 videos x {frames}", setting, Flops(judge[0]), judge[1]))
    return out


def editto_stages() -> list[Stage]:
    """Editto's training step, and editing with it few-step (a distilled Editto) and at 50 steps CFG 5."""
    height, width, frames = EDITTO
    latent = wan_latent_frames(frames) + 1  # with the reference frame, as the curriculum starts
    step = editto_train_step("vace-14b", latent, height, width)
    coding = 3 * wan_vae_encode(frames, height, width) + wan_vae_encode(1, height, width)
    train = step + coding + t5_encoder("umt5_xxl", TOKENS["wan_text"])
    out = [Stage("train_editto", "VACE-14B one step fwd+bwd, 480x832x73", "ours", Flops(train))]
    for steps, cfg in ((4, 1.2), (50, 5.0)):
        spec = {"path": "Wan2.1-VACE-14B-diffusers", "steps": steps, "guidance_scale": cfg}
        name = f"Editto (VACE-14B) {steps} steps CFG {cfg:g}, 480x832x73"
        flops = propagate(spec, {"clip": EDITTO}, reference=False)
        out.append(Stage("edit_with_editto", name, "ours", flops, default=steps == 4))
    return out
