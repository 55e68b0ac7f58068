"""Counting FLOPs of real model classes at real size on the meta device (no memory, no GPU), one function per
model part, for bench/flops.py. Configs are the published ones, in bench/flops_models.yaml."""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import torch
import yaml
from torch.utils.flop_counter import FlopCounterMode

from bench.gpu_costs import TRANSFORMERS, VACE_LAYERS

MODELS = yaml.safe_load((Path(__file__).parent / "flops_models.yaml").read_text())
TOKENS = MODELS["tokens"]
META = torch.device("meta")
BF16 = torch.bfloat16


def counted(work: Callable[[], Any], grad: bool = False) -> float:
    counter = FlopCounterMode(display=False)
    with counter, torch.set_grad_enabled(grad):
        work()
    return float(counter.get_total_flops())


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
def wan_forward(model: str, latent_frames: int, height: int, width: int, vace: bool) -> float:
    transformer = wan_transformer(model, vace)
    return counted(lambda: transformer(**wan_inputs(model, latent_frames, height, width, vace)))


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
def wan_vae_encode(frames: int, height: int, width: int) -> float:
    from diffusers import AutoencoderKLWan

    vae = on_meta(AutoencoderKLWan)
    return counted(lambda: vae.encode(empty(1, 3, frames, height, width)))


@cache
def wan_vae_decode(latent_frames: int, height: int, width: int) -> float:
    from diffusers import AutoencoderKLWan

    vae = on_meta(AutoencoderKLWan)
    return counted(lambda: vae.decode(empty(1, 16, latent_frames, height // 8, width // 8)))


@cache
def t5_encoder(name: str, tokens: int) -> float:
    from transformers import T5Config, T5EncoderModel, UMT5Config, UMT5EncoderModel

    cls, config = (UMT5EncoderModel, UMT5Config) if name == "umt5_xxl" else (T5EncoderModel, T5Config)
    model = on_meta(cls, config=config(**MODELS[name]["config"]))
    return counted(lambda: model(input_ids=torch.zeros(1, tokens, dtype=torch.long, device=META)))


# --- key-frame editors ------------------------------------------------------------------------------------


@cache
def qwen_image_forward(height: int, width: int, text_tokens: int) -> float:
    from diffusers import QwenImageTransformer2DModel

    model = on_meta(QwenImageTransformer2DModel, **MODELS["qwen_image_transformer"]["config"])
    h, w = height // 16, width // 16  # 8x VAE, then 2x2 patches
    return counted(
        lambda: model(
            hidden_states=empty(1, 2 * h * w, 64),  # the noisy latents, then the condition image's
            encoder_hidden_states=empty(1, text_tokens, 3584),
            encoder_hidden_states_mask=torch.ones(1, text_tokens, device=META),
            timestep=torch.zeros(1, device=META),
            img_shapes=[[(1, h, w), (1, h, w)]],
            return_dict=False,
        )
    )


@cache
def qwen_image_vae(height: int, width: int) -> float:
    """One encode of the condition image and one decode of the result."""
    from diffusers import AutoencoderKLQwenImage

    vae = on_meta(AutoencoderKLQwenImage)
    encode = counted(lambda: vae.encode(empty(1, 3, 1, height, width)))
    return encode + counted(lambda: vae.decode(empty(1, 16, 1, height // 8, width // 8)))


@cache
def flux_forward(height: int, width: int) -> float:
    from diffusers import FluxTransformer2DModel

    model = on_meta(FluxTransformer2DModel, **MODELS["flux_transformer"]["config"])
    image = 2 * (height // 16) * (width // 16)  # the noisy latents and the context image's, 2x2-packed
    text = TOKENS["flux_t5"]
    return counted(
        lambda: model(
            hidden_states=empty(1, image, 64),
            encoder_hidden_states=empty(1, text, 4096),
            pooled_projections=empty(1, 768),
            timestep=torch.zeros(1, device=META),
            img_ids=torch.zeros(image, 3, device=META),
            txt_ids=torch.zeros(text, 3, device=META),
            guidance=torch.ones(1, device=META),
            return_dict=False,
        )
    )


@cache
def flux_encoders_and_vae(height: int, width: int) -> float:
    from diffusers import AutoencoderKL
    from transformers import CLIPTextConfig, CLIPTextModel

    vae = on_meta(AutoencoderKL, **MODELS["flux_vae"]["config"])
    clip = on_meta(CLIPTextModel, config=CLIPTextConfig(**MODELS["clip_l"]["config"]))
    coding = counted(lambda: vae.encode(empty(1, 3, height, width))) + counted(
        lambda: vae.decode(empty(1, 16, height // 8, width // 8))
    )
    text = counted(lambda: clip(input_ids=torch.zeros(1, 77, dtype=torch.long, device=META)))
    return coding + text + t5_encoder("t5_xxl", TOKENS["flux_t5"])


# --- Qwen2.5-VL (captioner, judges, Qwen-Image-Edit's text encoder) ------------------------------------


@cache
def qwen_vl() -> Any:
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    config = Qwen2_5_VLConfig(**MODELS["qwen2_5_vl_7b"]["config"])
    config._attn_implementation = "sdpa"
    model = on_meta(Qwen2_5_VLForConditionalGeneration, config=config)
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
def qwen_vl_vision(grid: tuple[int, int, int]) -> float:
    t, h, w = grid
    visual = qwen_vl().model.visual
    return counted(lambda: visual(empty(t * h * w, 3 * 2 * 14 * 14), grid_thw=torch.tensor([grid])))


@cache
def qwen_vl_prefill(tokens: int) -> float:
    model = qwen_vl()

    def prefill() -> None:
        hidden = model.model.language_model(
            inputs_embeds=empty(1, tokens, 3584),
            position_ids=torch.zeros(3, 1, tokens, dtype=torch.long, device=META),
            use_cache=False,
        ).last_hidden_state
        model.lm_head(hidden[:, -1:])

    return counted(prefill)


def qwen_vl_call(grids: list[tuple[int, int, int]], text_tokens: int, answer_tokens: int) -> tuple[float, float]:
    """(FLOPs, decode bytes): vision tower per image/video, prefill, and the answer token by token (its
    FLOPs as the prefill of the longer sequence minus the shorter; its bytes as every LM weight per token)."""
    vision = sum(qwen_vl_vision(g) for g in grids)
    prompt = text_tokens + sum(t * h * w // 4 for t, h, w in grids)  # 2x2 patches merge into one token
    prefill = qwen_vl_prefill(prompt)
    decode = qwen_vl_prefill(prompt + answer_tokens) - prefill if answer_tokens else 0.0
    lm = qwen_vl().model.language_model
    weight_bytes = sum(p.numel() for p in lm.parameters()) * 2 + qwen_vl().lm_head.weight.numel() * 2
    return vision + prefill + decode, weight_bytes * answer_tokens


# --- Depth Anything V2 ------------------------------------------------------------------------------------


@cache
def depth_frame(height: int, width: int) -> float:
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config
    from transformers.models.dpt.image_processing_dpt import get_resize_output_image_size

    spec = MODELS["depth_anything_v2_large"]
    config = DepthAnythingConfig(backbone_config=Dinov2Config(**spec["backbone"]), **spec["config"])
    model = on_meta(DepthAnythingForDepthEstimation, config=config)
    size = get_resize_output_image_size(empty(3, height, width), (518, 518), keep_aspect_ratio=True, multiple=14)
    h, w = (size.height, size.width) if hasattr(size, "height") else size
    return counted(lambda: model(pixel_values=empty(1, 3, h, w)))
