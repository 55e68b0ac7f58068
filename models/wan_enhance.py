"""The temporal enhancer with diffusers' WanVideoToVideoPipeline: the generated video is re-noised a
little and denoised again with an empty prompt (the paper: Wan2.2's low-noise expert, 40-step schedule
with shift 12, only the last 4 steps, CFG 3). The fast preset fuses a step-and-CFG-distilled LoRA and runs the
same last steps at guidance_scale 1: one transformer pass per step. `vae_dtype` as for propagation
(models/wan_vace.py)."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import torch

from models.device_memory import raises_out_of_device_memory
from models.frames import resize, to_pil, to_uint8, wan_frame_count
from models.pipelines import Attention, Denoiser, Quantization, VaeDtype, attention_mark, place_pipeline, tile_vae
from models.wan_vace import load_wan_pipeline


def enhance_video(
    pipe: Any, frames: np.ndarray, prompt: str, steps: int, strength: float, guidance_scale: float, seed: int
) -> np.ndarray:
    """One re-noise-and-denoise call as the backend makes it (bench/gpu_costs.py times this too), at the frames'
    own size; frames as floats in [0, 1]."""
    with torch.inference_mode():
        return pipe(
            video=to_pil(frames),
            prompt=prompt,
            height=frames.shape[1],
            width=frames.shape[2],
            num_inference_steps=steps,
            strength=strength,
            guidance_scale=guidance_scale,
            generator=torch.Generator("cpu").manual_seed(seed),
            output_type="np",
        ).frames[0]


class WanVideoEnhancer:
    def __init__(
        self,
        path: str,
        device: str = "cuda",
        dtype: str = "bfloat16",
        steps: int = 40,
        strength: float = 0.1,
        guidance_scale: float = 3.0,
        flow_shift: float | None = 12.0,
        height: int = 480,
        width: int = 832,
        cpu_offload: bool = False,
        lora_path: str | None = None,
        lora_scale: float = 1.0,
        attention: Attention = "native",
        quantization: Quantization = "none",
        vae_dtype: VaeDtype = "float32",
    ) -> None:
        denoiser = Denoiser(lora_path, lora_scale, attention, quantization)
        pipe, runs = load_wan_pipeline(
            "WanVideoToVideoPipeline", path, dtype, vae_dtype, flow_shift, "enhancer", device, denoiser
        )
        self.pipe = place_pipeline(pipe, device, cpu_offload)
        self.steps, self.strength, self.guidance_scale = steps, strength, guidance_scale
        self.height, self.width = height, width
        self.lock = threading.Lock()
        self.spec_id = self.identity(path, device, steps, strength, guidance_scale, flow_shift, runs)

    @staticmethod
    def identity(
        path: str,
        device: str,
        steps: int,
        strength: float,
        guidance_scale: float,
        flow_shift: float | None,
        attention: Attention,
        **_: Any,
    ) -> str:
        name = path.rstrip("/").split("/")[-1]
        mark = attention_mark(attention, device)
        return f"wan-v2v:{name}:{steps}steps:strength{strength}:cfg{guidance_scale}:shift{flow_shift}{mark}"

    def frames_made(self, frames: int) -> int:
        return wan_frame_count(frames)

    @raises_out_of_device_memory
    def enhance(
        self, video: np.ndarray, source: np.ndarray, prompt: str, seed: int, memory_level: int = 0
    ) -> np.ndarray:
        if len(video) != self.frames_made(len(video)):
            raise ValueError(f"the Wan enhancer makes 4k+1 frames: {len(video)} asked for")
        frames = resize(video, self.width, self.height)
        with self.lock:
            tile_vae(self.pipe, memory_level)
            out = enhance_video(self.pipe, frames, prompt, self.steps, self.strength, self.guidance_scale, seed)
        out = to_uint8(np.asarray(out))
        return resize(out, video.shape[2], video.shape[1])
