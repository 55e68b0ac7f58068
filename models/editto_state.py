"""An Editto checkpoint's trained state, whole, whatever the width that trains it: the trained weights as
full tensors and the optimizer state keyed by parameter name (torch.distributed.checkpoint's state-dict
functions, which gather FSDP2's shards into it and split it again across any number of workers). The trained
state is the LoRA (at rank 128 on the 14B model: 0.5 GB of weights, twice that of AdamW moments), small enough
to gather in one process, so a checkpoint is one file of each that diffusers, DiffSynth-Studio and a
resume at another width all read; sharded files (torch.distributed.checkpoint.save) would pay off only for a
trained state too large for one host, such as the whole 14B model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_optimizer_state_dict,
    set_optimizer_state_dict,
)


def trained_state(trained: dict[str, torch.nn.Parameter]) -> dict[str, torch.Tensor]:
    """The trained parameters, whole, in host memory. Sharded ones are gathered: every worker must call
    this, in the same order."""
    whole = {}
    for name, param in trained.items():
        value = param.full_tensor() if hasattr(param, "full_tensor") else param
        whole[name] = value.detach().cpu().contiguous()
    return whole


def optimizer_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer, sharded: bool) -> dict[str, Any]:
    """AdamW's state keyed by parameter name, whole (gathered to the first worker when sharded: every worker
    must call this)."""
    options = StateDictOptions(full_state_dict=sharded, cpu_offload=sharded)
    return get_optimizer_state_dict(model, optimizer, options=options)


def set_optimizer_state(
    model: torch.nn.Module, optimizer: torch.optim.Optimizer, state: dict[str, Any], sharded: bool
) -> None:
    """A whole, name-keyed optimizer state into this worker's optimizer (its shard of it, when sharded)."""
    set_optimizer_state_dict(model, optimizer, state, options=StateDictOptions(full_state_dict=sharded))


def read_training_state(path: Path, trained_names: list[str]) -> dict[str, Any]:
    """A training_state.pt. One written before the optimizer state was keyed by name (by position in the
    trained parameters, which are ordered by name in the model) is converted on reading."""
    extra = torch.load(path, weights_only=True, map_location="cpu")
    optimizer = extra["optimizer"]
    if any(isinstance(k, int) for k in optimizer.get("state", {})) or any(
        isinstance(p, int) for g in optimizer.get("param_groups", []) for p in g["params"]
    ):
        extra["optimizer"] = {
            "state": {trained_names[k]: v for k, v in optimizer["state"].items()},
            "param_groups": [
                {**g, "params": [trained_names[k] for k in g["params"]]} for g in optimizer["param_groups"]
            ],
        }
    return extra
