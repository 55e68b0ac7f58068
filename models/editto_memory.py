"""Editto's peak device memory while training, estimated before anything is placed on the device, so a
round that cannot fit says so in one line instead of failing out of memory an hour in. An estimate from
parameter counts and activation arithmetic (not a measurement; no GPU has checked it yet):

- weights: every frozen parameter on the device at its dtype (the VAE in float32, the text encoder only
  when it stays on the device);
- training state: each trained value in float32 with its gradient and AdamW's two moments (16 bytes);
- activations, counted per token of the latent video (frames/4+1, +1 for the reference frame, times
  height/16 x width/16) in units of one hidden vector (dim values). A frozen Linear keeps nothing for
  backward; what a Wan block keeps is its norms' float32 inputs (norm1, norm2, norm3, q/k RMS norms: 12
  units), attention's q, k, v and output (4+2 units) and the GELU input (ffn_dim values), so 18 units +
  ffn_dim; a context block with LoRA also keeps each adapted layer's float32 input (14 units + 2 ffn_dim).
  With gradient checkpointing each block keeps only its input (1 unit) and one block at a time is
  recomputed during backward (its full count, plus about 4 units of gradients);
- 10% on top for the allocator's fragmentation and kernels' workspace.

Data-parallel over N workers with FSDP2 (models/editto_parallel.py), a worker holds 1/N of the transformer's
weights and of the training state; it gathers one block's weights whole while it computes it and the next
while it waits (FSDP2's prefetch: two blocks), and the weights outside the blocks (embeddings, head) for the
whole pass. The VAE, the text encoder and the activations are each worker's own: one sample a worker.

`python -m models.editto_memory` prints the tables docs/training.md shows for Wan2.1-VACE-14B."""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, replace
from typing import Any

GIB = 2**30
MARGIN = 1.10
WIDEST = 1024  # the most workers a refusal looks at for a width that fits
FROZEN_BLOCK_UNITS, LORA_BLOCK_EXTRA_UNITS, GRADIENT_UNITS = 18, 14, 4


@dataclass(frozen=True)
class ModelSize:
    """What the estimate needs to know of a loaded (or described) Wan VACE pipeline."""

    transformer_params: int
    text_encoder_params: int
    vae_params: int
    dim: int
    ffn_dim: int
    num_layers: int
    vace_blocks: int
    patch: tuple[int, int, int]
    block_params: int = 0  # the largest block's (each is gathered whole while it runs, when sharded)
    outside_blocks_params: int = 0  # embeddings and head: gathered whole for the whole pass, when sharded


@dataclass(frozen=True)
class TrainingShape:
    height: int
    width: int
    num_frames: int
    trained_values: int
    lora: bool
    gradient_checkpointing: bool
    offload_text_encoder: bool
    weight_bytes: int = 2  # bf16
    workers: int = 1  # data-parallel workers the transformer and its training state are sharded across


@dataclass(frozen=True)
class MemoryEstimate:
    weights_gib: float
    training_state_gib: float
    activations_gib: float
    peak_gib: float
    tokens: int
    workers: int = 1

    def line(self) -> str:
        each = f" per worker of {self.workers}" if self.workers > 1 else ""
        return (
            f"~{self.peak_gib:.1f} GiB estimated peak{each} (weights {self.weights_gib:.1f}, training state "
            f"{self.training_state_gib:.1f}, activations {self.activations_gib:.1f} for {self.tokens} tokens, +10%)"
        )


def estimate(model: ModelSize, shape: TrainingShape) -> MemoryEstimate:
    latent_frames = (shape.num_frames - 1) // 4 + 1 + 1  # + the reference frame, while the curriculum keeps it
    pt, ph, pw = model.patch
    tokens = latent_frames // pt * (shape.height // 8 // ph) * (shape.width // 8 // pw)
    unit = tokens * model.dim * shape.weight_bytes  # one hidden vector per token
    frozen_block = (FROZEN_BLOCK_UNITS * model.dim + model.ffn_dim) * tokens * shape.weight_bytes
    context_block = frozen_block + (
        (LORA_BLOCK_EXTRA_UNITS * model.dim + 2 * model.ffn_dim) * tokens * shape.weight_bytes if shape.lora else 0
    )
    if shape.gradient_checkpointing:
        activations = (model.num_layers + model.vace_blocks + 1 + GRADIENT_UNITS) * unit + context_block
    else:
        activations = model.num_layers * frozen_block + model.vace_blocks * context_block
    n = shape.workers
    transformer = model.transformer_params / n
    if n > 1:
        transformer += (2 * model.block_params + model.outside_blocks_params) * (n - 1) / n
    frozen = transformer * shape.weight_bytes + model.vae_params * 4
    if not shape.offload_text_encoder:
        frozen += model.text_encoder_params * shape.weight_bytes
    state = shape.trained_values * 16 / n
    total = (frozen + state + activations) * MARGIN
    return MemoryEstimate(frozen / GIB, state / GIB, activations / GIB, total / GIB, tokens, n)


def refusal(
    model: ModelSize,
    shape: TrainingShape,
    device: str,
    free_gib: float,
    total_gib: float,
    global_batch: int | None = None,
) -> str | None:
    """One line naming what to change when the estimate does not fit the device's free memory, else None:
    the fewest workers whose share would fit (among those that divide `global_batch`, when given), where
    sharding alone makes it fit."""
    peak = estimate(model, shape)
    if peak.peak_gib <= free_gib:
        return None
    widths = [n for n in range(shape.workers + 1, WIDEST + 1) if global_batch is None or global_batch % n == 0]
    fits = next((n for n in widths if estimate(model, replace(shape, workers=n)).peak_gib <= free_gib), None)
    if fits is not None:
        share = estimate(model, replace(shape, workers=fits)).peak_gib
        change = (
            f"train on {fits} GPUs or more (~{share:.1f} GiB each): --gpus {fits}, or backends.editto workers: {fits}"
        )
    elif not shape.gradient_checkpointing:
        change = "set gradient_checkpointing: true in backends.editto"
    elif not shape.offload_text_encoder:
        change = "set offload_text_encoder: true in backends.editto"
    else:
        change = f"lower backends.editto num_frames ({shape.num_frames}) or height x width"
    return (
        f"Editto training at {shape.height}x{shape.width}x{shape.num_frames} needs {peak.line()}, more than the "
        f"{free_gib:.1f} GiB free of {total_gib:.1f} GiB on {device}: {change}, or give it a larger GPU"
    )


# Wan2.1-VACE-14B as diffusers describes it (scripts/convert_wan_to_diffusers.py, "Wan-VACE-14B"), and the
# UMT5-XXL encoder it ships with (text_encoder/config.json of Wan-AI/Wan2.1-VACE-14B-diffusers).
WAN_VACE_14B: dict[str, Any] = {
    "added_kv_proj_dim": None,
    "attention_head_dim": 128,
    "cross_attn_norm": True,
    "eps": 1e-06,
    "ffn_dim": 13824,
    "freq_dim": 256,
    "in_channels": 16,
    "num_attention_heads": 40,
    "num_layers": 40,
    "out_channels": 16,
    "patch_size": [1, 2, 2],
    "qk_norm": "rms_norm_across_heads",
    "text_dim": 4096,
    "vace_layers": [0, 5, 10, 15, 20, 25, 30, 35],
    "vace_in_channels": 96,
}
UMT5_XXL: dict[str, Any] = {
    "d_model": 4096,
    "d_ff": 10240,
    "d_kv": 64,
    "num_heads": 64,
    "num_layers": 24,
    "vocab_size": 256384,
    "feed_forward_proj": "gated-gelu",
    "relative_attention_num_buckets": 32,
}
WAN_VAE_PARAMS = 126_892_531  # AutoencoderKLWan (Wan2.1_VAE), counted from its default config


def size_of(transformer: Any, text_encoder_params: int, vae_params: int) -> ModelSize:
    cfg = transformer.config
    base = {n: p.numel() for n, p in transformer.named_parameters() if ".lora_" not in n}
    blocks: dict[str, int] = {}
    for name, count in base.items():
        if name.startswith(("blocks.", "vace_blocks.")):
            block = ".".join(name.split(".")[:2])
            blocks[block] = blocks.get(block, 0) + count
    return ModelSize(
        transformer_params=sum(base.values()),
        text_encoder_params=text_encoder_params,
        vae_params=vae_params,
        dim=cfg.num_attention_heads * cfg.attention_head_dim,
        ffn_dim=cfg.ffn_dim,
        num_layers=cfg.num_layers,
        vace_blocks=len(cfg.vace_layers),
        patch=tuple(cfg.patch_size),
        block_params=max(blocks.values(), default=0),
        outside_blocks_params=sum(base.values()) - sum(blocks.values()),
    )


def wan_vace_14b() -> ModelSize:
    """The 14B model's sizes, counted from its configs on the meta device (no memory, no weights)."""
    import torch
    from diffusers import WanVACETransformer3DModel
    from transformers import UMT5Config, UMT5EncoderModel

    with torch.device("meta"):
        transformer = WanVACETransformer3DModel(**WAN_VACE_14B)
        encoder = UMT5EncoderModel(UMT5Config(**UMT5_XXL))
    return size_of(transformer, sum(p.numel() for p in encoder.parameters()), WAN_VAE_PARAMS)


def lora_values(model: ModelSize, rank: int) -> int:
    """Trained values of train.sh's LoRA: self- and cross-attention q, k, v, o and both FFN linears."""
    per_block = 8 * rank * 2 * model.dim + 2 * rank * (model.dim + model.ffn_dim)
    return per_block * model.vace_blocks


ROWS = (  # (what, height, width, frames, lora, gradient checkpointing, text encoder off the GPU)
    ("released recipe (LoRA 128), our defaults", 480, 832, 73, True, True, True),
    ("... text encoder kept on the GPU", 480, 832, 73, True, True, False),
    ("... without gradient checkpointing", 480, 832, 73, True, False, True),
    ("... at the dataset's 720x1280, 101 frames", 720, 1280, 101, True, True, True),
    ("context projections in full (lora_rank: null)", 480, 832, 73, False, True, True),
)


def table(gpus_gib: tuple[float, ...]) -> str:
    model = wan_vace_14b()
    projections = model.vace_blocks * model.dim * (model.dim + 1) + model.dim * (model.dim + 1)
    head = "| Editto, Wan2.1-VACE-14B | HxWxT | estimated peak | " + " | ".join(f"{g:g} GiB" for g in gpus_gib)
    lines = [head + " |", "|" + " --- |" * (3 + len(gpus_gib))]
    for what, h, w, t, lora, checkpointing, offload in ROWS:
        trained = lora_values(model, 128) if lora else projections
        peak = estimate(model, TrainingShape(h, w, t, trained, lora, checkpointing, offload)).peak_gib
        fits = " | ".join("fits" if peak <= g else "refused" for g in gpus_gib)
        lines.append(f"| {what} | {h}x{w}x{t} | {peak:.0f} GiB | {fits} |")
    return "\n".join(lines)


SHARDED_ROWS = (ROWS[0], ROWS[3], ROWS[2])  # what sharding changes most: the recipe, at 720p, without checkpointing


def width_table(widths: tuple[int, ...]) -> str:
    """A worker's estimated peak at each data-parallel width, FSDP-sharded."""
    model = wan_vace_14b()
    head = "| Editto, Wan2.1-VACE-14B, per worker | HxWxT | " + " | ".join(f"{n} GPU{'s' * (n > 1)}" for n in widths)
    lines = [head + " |", "|" + " --- |" * (2 + len(widths))]
    for what, h, w, t, lora, checkpointing, offload in SHARDED_ROWS:
        shape = TrainingShape(h, w, t, lora_values(model, 128), lora, checkpointing, offload)
        peaks = [estimate(model, replace(shape, workers=n)).peak_gib for n in widths]
        lines.append(f"| {what} | {h}x{w}x{t} | " + " | ".join(f"{p:.0f} GiB" for p in peaks) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Editto's estimated training memory at 14B, per GPU size.")
    # What nvidia-smi reports for an 80 GB H100 (81559 MiB) and a 141 GB H200 (143771 MiB).
    parser.add_argument("--gpu-gib", type=float, nargs="+", default=[79.6, 140.4])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 8, 64])
    args = parser.parse_args(argv)
    sys.stdout.write(table(tuple(args.gpu_gib)) + "\n\n" + width_table(tuple(args.workers)) + "\n")


if __name__ == "__main__":
    main()
