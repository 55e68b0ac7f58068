"""An Editto checkpoint in the names its users load: diffusers' LoRA format (what
`WanVACEPipeline.load_lora_weights` reads: `transformer.`-prefixed PEFT keys without the adapter name) and
DiffSynth-Studio's (what its Wan training writes with `--remove_prefix_in_ckpt pipe.vace.` and
`pipe.load_lora(pipe.vace, path)` reads, as Ditto's infer_ditto.py does). Both carry the LoRA scale
alpha/rank folded into lora_B, since neither loader reads an alpha here: diffusers assumes alpha = rank and
DiffSynth's loader applies B @ A as it is."""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch

from models.protocols import EDITTO_DIFFSYNTH, EDITTO_DIFFUSERS

# diffusers' VACE names -> the original Wan/DiffSynth names, the inverse of diffusers'
# scripts/convert_wan_to_diffusers.py VACE_TRANSFORMER_KEYS_RENAME_DICT (for the layers Editto trains).
TO_DIFFSYNTH = (
    (r"\.attn1\.to_out\.0\.", ".self_attn.o."),
    (r"\.attn1\.to_([qkv])\.", r".self_attn.\1."),
    (r"\.attn2\.to_out\.0\.", ".cross_attn.o."),
    (r"\.attn2\.to_([qkv])\.", r".cross_attn.\1."),
    (r"\.ffn\.net\.0\.proj\.", ".ffn.0."),
    (r"\.ffn\.net\.2\.", ".ffn.2."),
    (r"\.proj_in\.", ".before_proj."),
    (r"\.proj_out\.", ".after_proj."),
)


@dataclass(frozen=True)
class Consumer:
    file: str  # in the checkpoint folder
    load: str  # how that consumer loads it; {path} is the file's path


def consumers(lora: bool) -> dict[str, Consumer]:
    """Which file each user of a checkpoint loads, and how."""
    if lora:
        return {
            "diffusers": Consumer(EDITTO_DIFFUSERS, 'WanVACEPipeline.from_pretrained(...).load_lora_weights("{path}")'),
            "DiffSynth-Studio": Consumer(EDITTO_DIFFSYNTH, 'pipe.load_lora(pipe.vace, "{path}")  # as infer_ditto.py'),
        }
    return {
        "diffusers": Consumer(EDITTO_DIFFUSERS, 'pipe.transformer.load_state_dict(load_file("{path}"), strict=False)'),
        "DiffSynth-Studio": Consumer(EDITTO_DIFFSYNTH, 'pipe.vace.load_state_dict(load_file("{path}"), strict=False)'),
    }


def lora_scaled(trained: dict[str, torch.Tensor], scale: float) -> dict[str, torch.Tensor]:
    """PEFT adapters with their scale folded into lora_B, so a loader that assumes scale 1 gets the same
    layer."""
    return {n: (t * scale if ".lora_B." in n else t).detach().cpu().contiguous() for n, t in trained.items()}


def diffusers_names(state: dict[str, torch.Tensor], lora: bool) -> dict[str, torch.Tensor]:
    """LoRA: `transformer.vace_blocks.0.attn1.to_q.lora_A.weight`; projections: the transformer's own names."""
    if not lora:
        return dict(state)
    return {"transformer." + n.replace(".default.", "."): t for n, t in state.items()}


def diffsynth_name(name: str) -> str:
    for pattern, replacement in TO_DIFFSYNTH:
        name = re.sub(pattern, replacement, name)
    return name


def diffsynth_names(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """`vace_blocks.0.self_attn.q.lora_A.default.weight`: DiffSynth's module names under pipe.vace."""
    return {diffsynth_name(n): t for n, t in state.items()}
