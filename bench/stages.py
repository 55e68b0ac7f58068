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
from models.frames import wan_frame_count
from models.protocols import LOCAL_CATEGORIES
from prompts.loader import PromptBook

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
# Each preset is a config file over the full profile (`full` is the profile alone: the paper's settings at 480p,
# without a LoRA file) and states its own clip size, which is what its figures are for.
PRESETS: dict[str, Path | None] = {
    "fast": CONFIGS / "fast.yaml",
    "fast_480p": CONFIGS / "fast_480p.yaml",
    "paper": CONFIGS / "paper.yaml",
    "full": None,
}
# --quick: every code path at tiny sizes on models cut to a layer or two (flops_models.yaml `quick`)
QUICK_SIZES: dict[str, Any] = {
    "clip": (32, 64, 9),
    "keyframe": (32, 64),
    "edit_side": 64,
    "vl_frames": 2,
    "quick": True,
}
EDITTO = (480, 832, 73)  # the released Editto training script's size
EXAMPLE_EDIT = {
    "instruction": "Turn the whole scene into a watercolour painting with soft washes of colour",
    "target_description": "A watercolour painting of the same scene, soft washes of colour, paper texture, "
    "the same people and motion as the source",
    "category": "global_style",
    "category_description": "the whole frame restyled as an art medium or a film look",
    "local": "global_style" in LOCAL_CATEGORIES,
    "num_frames": 81,
    "fps": 16,
    "frames_shown": 0,  # the in-process Qwen2.5-VL sees a video whole
    "max_words": 30,
    "max_target_sentences": 3,
    "caption": "A woman in a red coat walks a brown dog along a wet city street at dusk; shop windows glow "
    "orange behind them and cars pass on the right. The camera follows at walking pace.",
    "avoid": [],
    "sees_frames": True,
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
ALTERNATIVES["fast_480p"] = ALTERNATIVES["fast"]


@dataclass
class Stage:
    tool: str  # the graph's tool this stage is a call of
    name: str  # the model and its settings
    size: str  # the clip size it runs at, e.g. 1280x720x101
    flops: Flops
    decode_bytes: float = 0.0  # weights read per answer token, times the answer's tokens
    decode_tokens: int = 0  # answer tokens generated one at a time
    attention: str = "native"  # the denoiser's attention kernel (a backend's `attention` option)
    default: bool = True  # what the preset runs; alternatives are listed for comparison


@cache
def preset_config(preset: str) -> Any:
    """The preset's RunConfig, validated as a run validates it."""
    return load_config("full", PRESETS[preset])


def preset_backends(preset: str) -> dict[str, dict[str, Any]]:
    return preset_config(preset).backends.model_dump()


def preset_sizes(preset: str) -> dict[str, Any]:
    """The clip (height, width, frames) the preset's propagator makes, the key frame the editor is given (the
    ingested clip's first frame: a 16:9 source at the ingest's longest side) and the frames the VLM sees."""
    cfg = preset_config(preset)
    spec = cfg.backends.propagator
    side = cfg.tools.ingest.max_side
    return {
        "clip": (spec["height"], spec["width"], wan_frame_count(spec["num_frames"])),
        "keyframe": (round(side * 9 / 16), side),
        "edit_side": 1024,  # Qwen-Image-Edit works at ~1 MP, FluxKontextEditor at 1024 px on the longer side
        "vl_frames": cfg.backends.video_judge.get("video_frames", 16),
    }


def size_name(sizes: dict[str, Any]) -> str:
    height, width, frames = sizes["clip"]
    return f"{width}x{height}x{frames}"


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
    fp8 = ", FP8" if spec.get("quantization") == "fp8" else ""
    return fp8 + (", SageAttention" if spec.get("attention") == "sage" else "")


def propagate(spec: dict[str, Any], sizes: dict[str, Any], reference: bool = True) -> Flops:
    """VACE's call (propagation's, and Editto's edit): the control video encoded, its blank half (all zeros under a
    full mask) only once per shape (models/wan_vace.WanVACEFullMaskPipeline: no encode per call once a run is under
    way), the reference frame, the decode, the passes and the prompt."""
    height, width, frames = sizes["clip"]
    n, quick = passes(spec["guidance_scale"]), sizes.get("quick", False)
    latent = wan_latent_frames(frames)
    forward = wan_forward(wan_size(spec["path"], quick), latent + reference, height, width, True)
    transformer = (spec["steps"] * n * forward).run_in(spec.get("quantization", "none"))
    encode = wan_vae_encode(frames, height, width) + reference * wan_vae_encode(1, height, width)
    text = n * t5_encoder("umt5_xxl", TOKENS["wan_text"], quick)
    return transformer + encode + wan_vae_decode(latent, height, width) + text


def propagate_name(spec: dict[str, Any]) -> str:
    model = "1.3B" if wan_size(spec["path"]) == "vace-1.3b" else "14B"
    return f"Wan2.1-VACE-{model} {spec['steps']} steps CFG {spec['guidance_scale']:g}{fp8_mark(spec)}"


def enhance(spec: dict[str, Any], sizes: dict[str, Any]) -> Flops:
    """The enhancer's call: started from the propagation's latents where sizes["handed"] says it is (no encode),
    else from an encode of the video; its passes, the decode, the prompt."""
    height, width, frames = sizes["clip"]
    latent, n, quick = wan_latent_frames(frames), passes(spec["guidance_scale"]), sizes.get("quick", False)
    steps = int(spec["steps"] * spec["strength"])  # diffusers' video-to-video runs this many of the schedule
    forward = wan_forward(wan_size(spec["path"], quick), latent, height, width, False)
    transformer = (steps * n * forward).run_in(spec.get("quantization", "none"))
    encode = 0.0 if sizes.get("handed", False) else wan_vae_encode(frames, height, width)
    coding = encode + wan_vae_decode(latent, height, width)
    return transformer + coding + n * t5_encoder("umt5_xxl", TOKENS["wan_text"], quick)


def hands_latents(backends: dict[str, dict[str, Any]]) -> bool:
    """Whether a run hands the propagation's latents to the enhancer, modelled from the config as the run decides
    it (tools/enhance_temporal.py): Wan VACE to Wan's video-to-video enhancer at the same working size, the whole
    video (memory level 0, as every stage here is priced). Both VAEs are taken to be Wan2.1's, which this file
    counts (meta_flops.wan_vae) and every Wan checkpoint of the presets ships; a run compares the VAEs' configs
    themselves and encodes the video where they differ."""
    propagator, enhancer = backends["propagator"], backends["enhancer"]
    kinds = (propagator.get("kind"), enhancer.get("kind")) == ("wan_vace", "wan_v2v")
    return kinds and all(propagator.get(k) == enhancer.get(k) for k in ("height", "width"))


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
    encoder_flops = qwen_vl_call([grid], vl_tokens, 0, quick)[0]
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


def vl_stage(
    tool: str,
    name: str,
    size: str,
    grids: list[tuple[int, int, int]],
    templates: tuple[str, ...],
    answer: str,
    quick: bool,
) -> Stage:
    """A Qwen2.5-VL call: the images or videos, the rendered templates as its prompt, an answer of TOKENS[answer]."""
    tokens = TOKENS[answer]
    flops, decode_bytes = qwen_vl_call(grids, sum(prompt_tokens(t) for t in templates), tokens, quick)
    return Stage(tool, name, size, flops, decode_bytes, tokens)


def stages(preset: str, quick: bool = False, alternatives: bool = True) -> list[Stage]:
    """Every neural stage of the preset at its own size (`quick`: at tiny sizes, on models cut short)."""
    backends = preset_backends(preset)
    sizes = {**(QUICK_SIZES if quick else preset_sizes(preset)), "handed": hands_latents(backends)}
    size = size_name(sizes)
    clip, keyframe = sizes["clip"], sizes["keyframe"]
    kf = vl_grid(*keyframe, 1, 448 * 448)
    video = vl_grid(*clip[:2], sizes["vl_frames"], 448 * 448)
    frames = f"{sizes['vl_frames']} frames"
    plan = ("plan_instruction.system.j2", "plan_instruction.user.j2")  # it sees the clip's frames, as the captioner
    out = [
        vl_stage(
            "caption_clip",
            f"Qwen2.5-VL-7B caption, {frames}",
            size,
            [video],
            ("caption_clip.j2",),
            "caption_answer",
            quick,
        ),
        vl_stage("plan_instruction", f"Qwen2.5-VL-7B plan, {frames}", size, [video], plan, "plan_answer", quick),
    ]
    for step in ("editor", "propagator", "enhancer"):
        tool, flops, name = STAGE_OF[step]
        spec = backends[step]
        out.append(Stage(tool, name(spec), size, flops(spec, sizes), attention=spec.get("attention", "native")))  # type: ignore[operator]
        for change in ALTERNATIVES.get(preset, {}).get(step, []) if alternatives else []:
            alt = {**spec, **change}
            out.append(
                Stage(tool, name(alt), size, flops(alt, sizes), attention=alt.get("attention", "native"), default=False)
            )  # type: ignore[operator]
    out.append(
        vl_stage(
            "judge_keyframe",
            "Qwen2.5-VL-7B, 2 images",
            size,
            [kf, kf],
            ("judge_keyframe.j2",),
            "judge_keyframe_answer",
            quick,
        )
    )
    depth = clip[2] * depth_frame(*clip[:2], quick)
    out.append(Stage("estimate_depth", f"Depth Anything V2 Large, {clip[2]} frames", size, Flops(depth)))
    out.append(
        vl_stage(
            "judge_video",
            f"Qwen2.5-VL-7B, 2 videos x {frames}",
            size,
            [video, video],
            ("judge_video.j2",),
            "judge_video_answer",
            quick,
        )
    )
    return out


def editto_sample(height: int, width: int, frames: int, quick: bool = False) -> Flops:
    """One training sample of Editto: the transformer's forward and backward (the reference frame in, as the
    curriculum starts), the VAE encodes of both clips (the source's blank half is cached: WanVACEFullMaskPipeline)
    and the reference, the instruction's text encoding."""
    latent = wan_latent_frames(frames) + 1
    step = editto_train_step("tiny" if quick else "vace-14b", latent, height, width)
    coding = 2 * wan_vae_encode(frames, height, width) + wan_vae_encode(1, height, width)
    return coding + step + t5_encoder("umt5_xxl", TOKENS["wan_text"], quick)


def editto_stages() -> list[Stage]:
    """Editto's training step, and editing with it few-step (a distilled Editto) and at 50 steps CFG 5."""
    train = editto_sample(*EDITTO)
    out = [Stage("train_editto", "VACE-14B one step fwd+bwd, 480x832x73", "832x480x73", train)]
    for steps, cfg in ((4, 1.2), (50, 5.0)):
        spec = {"path": "Wan2.1-VACE-14B-diffusers", "steps": steps, "guidance_scale": cfg}
        name = f"Editto (VACE-14B) {steps} steps CFG {cfg:g}, 480x832x73"
        flops = propagate(spec, {"clip": EDITTO}, reference=False)
        out.append(Stage("edit_with_editto", name, "832x480x73", flops, default=steps == 4))
    return out
