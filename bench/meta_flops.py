"""Counting FLOPs of real model classes at real size on the meta device (no memory, no GPU), one function per
model part, for bench/flops.py. Configs are the published ones, in bench/flops_models.yaml. The count is split
by how bench/flops.py prices it: a denoiser's forward reports the FLOPs of the linears FP8 quantization takes
(models/pipelines.fp8_linears) and of its attention (8-bit kernels run it at their own rate); a VAE's FLOPs and
a VLM's answer tokens (generated one at a time) are reported apart too."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from functools import cache
from pathlib import Path
from typing import Any

import torch
import yaml
from torch.utils.flop_counter import FlopCounterMode

from models.pipelines import fp8_linears

MODELS = yaml.safe_load((Path(__file__).parent / "flops_models.yaml").read_text())
TOKENS = MODELS["tokens"]
META = torch.device("meta")
BF16 = torch.bfloat16
WAN_COMMON = {"attention_head_dim": 128, "in_channels": 16, "out_channels": 16, "text_dim": 4096}
TRANSFORMERS: dict[str, dict[str, Any]] = {  # the released checkpoints' transformer/config.json
    "vace-1.3b": {**WAN_COMMON, "num_attention_heads": 12, "num_layers": 30, "ffn_dim": 8960},
    "vace-14b": {**WAN_COMMON, "num_attention_heads": 40, "num_layers": 40, "ffn_dim": 13824},
    "tiny": {
        **WAN_COMMON,
        "attention_head_dim": 8,
        "num_attention_heads": 2,
        "num_layers": 2,
        "ffn_dim": 32,
        "text_dim": 32,
    },
}
VACE_LAYERS = {"vace-1.3b": list(range(0, 30, 2)), "vace-14b": list(range(0, 40, 5)), "tiny": [0]}


@dataclass(frozen=True)
class Flops:
    """FLOPs of a call, and parts of them: those of linears FP8 can take (none unless the stage quantizes), of a
    denoiser's attention, of VAE encodes and decodes, and of answer tokens a VLM generates one at a time."""

    total: float
    fp8: float = 0.0
    attention: float = 0.0
    vae: float = 0.0
    decode: float = 0.0

    def __add__(self, other: Flops | float) -> Flops:
        if isinstance(other, Flops):
            return Flops(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))
        return replace(self, total=self.total + other)

    __radd__ = __add__

    def __mul__(self, times: float) -> Flops:
        return Flops(*(getattr(self, f.name) * times for f in fields(self)))

    __rmul__ = __mul__

    def run_in(self, quantization: str) -> Flops:
        """What runs in FP8 under a backend's `quantization` option."""
        return self if quantization == "fp8" else replace(self, fp8=0.0)


# On the meta device scaled_dot_product_attention decomposes into batched matmuls, and a DiT's linears are
# addmm/mm: the denoisers' attention is the FLOPs of these ops (checked per module: bench/RESULTS.md).
ATTENTION_OPS = ("bmm", "scaled_dot_product")


def counted(work: Callable[[], Any], grad: bool = False) -> float:
    counter = FlopCounterMode(display=False)
    with counter, torch.set_grad_enabled(grad):
        work()
    return float(counter.get_total_flops())


def counted_denoiser(model: torch.nn.Module, work: Callable[[], Any]) -> Flops:
    """All FLOPs of `work`, those of the model's FP8-able linears (2 x inputs x outputs per token), and those of
    its attention."""
    fp8 = [0.0]

    def count(linear: torch.nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        fp8[0] += 2.0 * args[0].numel() * linear.out_features

    hooks = [m.register_forward_pre_hook(count) for m in fp8_linears(model).values()]
    counter = FlopCounterMode(display=False)
    try:
        with counter, torch.no_grad():
            work()
    finally:
        for hook in hooks:
            hook.remove()
    ops = counter.get_flop_counts()["Global"]
    attention = sum(n for op, n in ops.items() if any(name in str(op) for name in ATTENTION_OPS))
    return Flops(float(counter.get_total_flops()), fp8[0], float(attention))


def vae_flops(work: Callable[[], Any]) -> Flops:
    flops = counted(work)
    return Flops(flops, vae=flops)


def resident_bytes(model: torch.nn.Module, quantization: str = "none", dtype_bytes: int = 2) -> float:
    """Bytes of the model's weights on the device: `dtype_bytes` each, one for the weights FP8 takes."""
    total = sum(p.numel() for p in model.parameters()) * dtype_bytes
    if quantization == "fp8":
        total -= sum(m.weight.numel() for m in fp8_linears(model).values()) * (dtype_bytes - 1)
    return float(total)


def config(name: str, quick: bool = False) -> dict[str, Any]:
    """A model's published config; with `quick`, its `quick:` overrides (a layer or two, for bench --quick)."""
    return merged(MODELS[name]["config"], MODELS[name].get("quick", {}) if quick else {})


def merged(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        out[key] = merged(base[key], value) if isinstance(value, dict) else value
    return out


def on_meta(cls: type, **config: Any) -> Any:
    with META:
        return cls(**config).to(BF16).eval()


def empty(*shape: int, dtype: torch.dtype = BF16) -> torch.Tensor:
    return torch.empty(*shape, device=META, dtype=dtype)


# --- Wan (VACE propagation, the enhancer, Editto) -------------------------------------------------------


@cache
def wan_transformer(model: str, vace: bool) -> Any:
    from diffusers import WanTransformer3DModel, WanVACETransformer3DModel

    if vace:
        return on_meta(
            WanVACETransformer3DModel, **TRANSFORMERS[model], vace_in_channels=96, vace_layers=VACE_LAYERS[model]
        )
    return on_meta(WanTransformer3DModel, **TRANSFORMERS[model])


def wan_inputs(model: str, latent_frames: int, height: int, width: int, vace: bool) -> dict[str, Any]:
    shape = (1, 16, latent_frames, height // 8, width // 8)
    inputs = {
        "hidden_states": empty(*shape),
        "timestep": torch.zeros(1, device=META),
        "encoder_hidden_states": empty(1, TOKENS["wan_text"], TRANSFORMERS[model]["text_dim"]),
        "return_dict": False,
    }
    if vace:  # 32 latent channels of the masked video + 64 of the mask
        inputs["control_hidden_states"] = empty(1, 96, *shape[2:])
    return inputs


@cache
def wan_forward(model: str, latent_frames: int, height: int, width: int, vace: bool) -> Flops:
    transformer = wan_transformer(model, vace)
    return counted_denoiser(transformer, lambda: transformer(**wan_inputs(model, latent_frames, height, width, vace)))


@cache
def editto_train_step(model: str, latent_frames: int, height: int, width: int) -> float:
    """Forward + backward with the context blocks' projections trainable and gradient checkpointing on, as
    models/editto_trainer.py trains by default."""
    transformer = wan_transformer(model, True)
    for name, param in transformer.named_parameters():
        param.requires_grad_(name.startswith("vace_blocks.") and (".proj_in." in name or ".proj_out." in name))
    transformer.train().enable_gradient_checkpointing()

    def step() -> None:
        out = transformer(**wan_inputs(model, latent_frames, height, width, True))[0]
        out.float().square().mean().backward()

    try:
        return counted(step, grad=True)
    finally:
        transformer.eval().disable_gradient_checkpointing()


@cache
def wan_vae() -> Any:
    from diffusers import AutoencoderKLWan

    return on_meta(AutoencoderKLWan)


@cache
def wan_vae_encode(frames: int, height: int, width: int) -> Flops:
    return vae_flops(lambda: wan_vae().encode(empty(1, 3, frames, height, width)))


@cache
def wan_vae_decode(latent_frames: int, height: int, width: int) -> Flops:
    return vae_flops(lambda: wan_vae().decode(empty(1, 16, latent_frames, height // 8, width // 8)))


@cache
def t5_model(name: str, quick: bool = False) -> Any:
    from transformers import T5Config, T5EncoderModel, UMT5Config, UMT5EncoderModel

    cls, cfg = (UMT5EncoderModel, UMT5Config) if name == "umt5_xxl" else (T5EncoderModel, T5Config)
    return on_meta(cls, config=cfg(**config(name, quick)))


@cache
def t5_encoder(name: str, tokens: int, quick: bool = False) -> float:
    model = t5_model(name, quick)
    return counted(lambda: model(input_ids=torch.zeros(1, tokens, dtype=torch.long, device=META)))


# --- key-frame editors ------------------------------------------------------------------------------------


@cache
def qwen_image_transformer(quick: bool = False) -> Any:
    from diffusers import QwenImageTransformer2DModel

    return on_meta(QwenImageTransformer2DModel, **config("qwen_image_transformer", quick))


@cache
def qwen_image_forward(height: int, width: int, text_tokens: int, quick: bool = False) -> Flops:
    model = qwen_image_transformer(quick)
    h, w = height // 16, width // 16  # 8x VAE, then 2x2 patches
    return counted_denoiser(
        model,
        lambda: model(
            hidden_states=empty(1, 2 * h * w, 64),  # the noisy latents, then the condition image's
            encoder_hidden_states=empty(1, text_tokens, 3584),
            encoder_hidden_states_mask=torch.ones(1, text_tokens, device=META),
            timestep=torch.zeros(1, device=META),
            img_shapes=[[(1, h, w), (1, h, w)]],
            return_dict=False,
        ),
    )


@cache
def qwen_image_vae_model() -> Any:
    from diffusers import AutoencoderKLQwenImage

    return on_meta(AutoencoderKLQwenImage)


@cache
def qwen_image_vae(height: int, width: int) -> Flops:
    """One encode of the condition image and one decode of the result."""
    vae = qwen_image_vae_model()
    encode = vae_flops(lambda: vae.encode(empty(1, 3, 1, height, width)))
    return encode + vae_flops(lambda: vae.decode(empty(1, 16, 1, height // 8, width // 8)))


@cache
def flux_transformer(quick: bool = False) -> Any:
    from diffusers import FluxTransformer2DModel

    return on_meta(FluxTransformer2DModel, **config("flux_transformer", quick))


@cache
def flux_forward(height: int, width: int, quick: bool = False) -> Flops:
    model = flux_transformer(quick)
    image = 2 * (height // 16) * (width // 16)  # the noisy latents and the context image's, 2x2-packed
    text = TOKENS["flux_t5"]
    return counted_denoiser(
        model,
        lambda: model(
            hidden_states=empty(1, image, 64),
            encoder_hidden_states=empty(1, text, 4096),
            pooled_projections=empty(1, 768),
            timestep=torch.zeros(1, device=META),
            img_ids=torch.zeros(image, 3, device=META),
            txt_ids=torch.zeros(text, 3, device=META),
            guidance=torch.ones(1, device=META),
            return_dict=False,
        ),
    )


@cache
def flux_encoders_and_vae(height: int, width: int, quick: bool = False) -> Flops:
    from diffusers import AutoencoderKL
    from transformers import CLIPTextConfig, CLIPTextModel

    vae = on_meta(AutoencoderKL, **MODELS["flux_vae"]["config"])
    clip = on_meta(CLIPTextModel, config=CLIPTextConfig(**config("clip_l", quick)))
    coding = vae_flops(lambda: vae.encode(empty(1, 3, height, width))) + vae_flops(
        lambda: vae.decode(empty(1, 16, height // 8, width // 8))
    )
    text = counted(lambda: clip(input_ids=torch.zeros(1, 77, dtype=torch.long, device=META)))
    return coding + text + t5_encoder("t5_xxl", TOKENS["flux_t5"], quick)


# --- Qwen2.5-VL (captioner, judges, Qwen-Image-Edit's text encoder) ------------------------------------


@cache
def qwen_vl(quick: bool = False) -> Any:
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    cfg = Qwen2_5_VLConfig(**config("qwen2_5_vl_7b", quick))
    cfg._attn_implementation = "sdpa"
    model = on_meta(Qwen2_5_VLForConditionalGeneration, config=cfg)
    # Window and rotary indices are computed from the grid on the CPU (they are data); only the rotary
    # table is moved to the meta device, where the blocks run.
    model.model.visual.rotary_pos_emb.register_forward_pre_hook(lambda _m, args: (args[0], args[1].to(META)))
    return model


def vl_grid(height: int, width: int, frames: int, max_pixels: int) -> tuple[int, int, int]:
    """(t, h, w) patches of one image or video, as models/qwen_vl.py sizes them before the processor."""
    from qwen_vl_utils import smart_resize

    h, w = smart_resize(height, width, factor=28, min_pixels=28 * 28 * 4, max_pixels=max_pixels)
    return (max(1, frames // 2), h // 14, w // 14)  # two frames per temporal patch


@cache
def qwen_vl_vision(grid: tuple[int, int, int], quick: bool = False) -> float:
    t, h, w = grid
    visual = qwen_vl(quick).model.visual
    return counted(lambda: visual(empty(t * h * w, 3 * 2 * 14 * 14), grid_thw=torch.tensor([grid])))


@cache
def qwen_vl_prefill(tokens: int, quick: bool = False) -> float:
    model = qwen_vl(quick)

    def prefill() -> None:
        hidden = model.model.language_model(
            inputs_embeds=empty(1, tokens, 3584),
            position_ids=torch.zeros(3, 1, tokens, dtype=torch.long, device=META),
            use_cache=False,
        ).last_hidden_state
        model.lm_head(hidden[:, -1:])

    return counted(prefill)


def qwen_vl_call(
    grids: list[tuple[int, int, int]], text_tokens: int, answer_tokens: int, quick: bool = False
) -> tuple[Flops, float]:
    """(FLOPs, decode bytes): vision tower per image/video, prefill, and the answer token by token (its
    FLOPs, `decode`, as the prefill of the longer sequence minus the shorter; its bytes as every LM weight per
    token)."""
    vision = sum(qwen_vl_vision(g, quick) for g in grids)
    prompt = text_tokens + sum(t * h * w // 4 for t, h, w in grids)  # 2x2 patches merge into one token
    prefill = qwen_vl_prefill(prompt, quick)
    decode = qwen_vl_prefill(prompt + answer_tokens, quick) - prefill if answer_tokens else 0.0
    model = qwen_vl(quick)
    weight_bytes = (
        sum(p.numel() for p in model.model.language_model.parameters()) * 2 + model.lm_head.weight.numel() * 2
    )
    return Flops(vision + prefill + decode, decode=decode), weight_bytes * answer_tokens


# --- Depth Anything V2 ------------------------------------------------------------------------------------


@cache
def depth_model(quick: bool = False) -> Any:
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config

    backbone = merged(
        MODELS["depth_anything_v2_large"]["backbone"], MODELS["depth_anything_v2_large"]["quick"] if quick else {}
    )
    cfg = DepthAnythingConfig(backbone_config=Dinov2Config(**backbone), **config("depth_anything_v2_large"))
    return on_meta(DepthAnythingForDepthEstimation, config=cfg)


@cache
def depth_frame(height: int, width: int, quick: bool = False) -> float:
    from transformers.models.dpt.image_processing_dpt import get_resize_output_image_size

    model = depth_model(quick)
    size = get_resize_output_image_size(empty(3, height, width), (518, 518), keep_aspect_ratio=True, multiple=14)
    h, w = (size.height, size.width) if hasattr(size, "height") else size
    return counted(lambda: model(pixel_values=empty(1, 3, h, w)))
