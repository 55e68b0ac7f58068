"""Loading a diffusers pipeline from a local folder and placing it on its device, for every backend."""

from __future__ import annotations

from typing import Any

from models.frames import torch_dtype


def load_pipeline(cls_name: str, path: str, dtype: str) -> Any:
    import diffusers

    return getattr(diffusers, cls_name).from_pretrained(path, dtype=torch_dtype(dtype))


def tile_vae(pipe: Any, memory_level: int) -> None:
    """Decode in tiles above memory level 0: the VAE's peak memory falls, its output barely changes."""
    if memory_level:
        pipe.vae.enable_tiling()
    else:
        pipe.vae.disable_tiling()


def place_pipeline(pipe: Any, device: str, cpu_offload: bool) -> Any:
    """On the device, or in host memory with each model moved to the GPU only while it runs."""
    if cpu_offload:
        pipe.enable_model_cpu_offload()
    else:
        pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    return pipe
