"""The temporal enhancer with diffusers' WanVideoToVideoPipeline: the generated video is re-noised a
little and denoised again with an empty prompt (the paper: Wan2.2's low-noise expert, 40-step schedule
with shift 12, only the last 4 steps, CFG 3). The fast preset fuses a step-and-CFG-distilled LoRA and runs the
same last steps at guidance_scale 1: one transformer pass per step. `vae_dtype` as for propagation
(models/wan_vace.py).

Handed the propagation's latents (its VAE's latent space equal to this one's, at this working size), the
enhancer starts from them instead of VAE-encoding the decoded video again: one encode saved, and the decode ->
8 bits -> encode round trip's loss with it."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import torch
from diffusers.pipelines.wan.pipeline_wan_video2video import retrieve_timesteps
from diffusers.utils.torch_utils import randn_tensor

from models.device_memory import raises_out_of_device_memory
from models.frames import resize, to_pil, to_uint8, wan_frame_count
from models.pipelines import Attention, Denoiser, Quantization, VaeDtype, attention_mark, place_pipeline, tile_vae
from models.protocols import VideoLatents
from models.wan_vace import latent_space, load_wan_pipeline


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


def enhance_latents(
    pipe: Any,
    latents: torch.Tensor,
    prompt: str,
    steps: int,
    strength: float,
    guidance_scale: float,
    seed: int,
) -> np.ndarray:
    """enhance_video() of the video these latents ([1, C, T', H', W'], normalised) decode to, started from them.
    WanVideoToVideoPipeline takes `latents` as its already re-noised start, so they are re-noised here as its
    prepare_latents re-noises the latents it encodes: the first timestep of the same schedule, the same
    generator's first draw (it draws nothing before), the scheduler's add_noise or scale_noise. Handed the
    video's own encoding, the result is enhance_video()'s (tests/models/test_wan_latents.py)."""
    device = pipe._execution_device
    start = latents.to(device, torch.float32)
    timesteps, count = retrieve_timesteps(pipe.scheduler, steps, device)
    first = pipe.get_timesteps(count, timesteps, strength, device)[0][:1]
    generator = torch.Generator("cpu").manual_seed(seed)
    noise = randn_tensor(start.shape, generator=generator, device=device, dtype=torch.float32)
    if hasattr(pipe.scheduler, "add_noise"):
        noised = pipe.scheduler.add_noise(start, noise, first)
    else:
        noised = pipe.scheduler.scale_noise(start, first, noise)
    scale = pipe.vae_scale_factor_spatial
    with torch.inference_mode():
        return pipe(
            latents=noised,
            prompt=prompt,
            height=start.shape[-2] * scale,
            width=start.shape[-1] * scale,
            num_inference_steps=steps,
            strength=strength,
            guidance_scale=guidance_scale,
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

    def latents_refused(self, latents: VideoLatents) -> str | None:
        space = latent_space(self.pipe)
        if latents.space != space:
            differ = sorted(k for k in space.keys() | latents.space.keys() if space.get(k) != latents.space.get(k))
            return f"the propagator's VAE has another latent space ({', '.join(differ)} differ)"
        if (latents.height, latents.width) != (self.height, self.width):
            size = f"{latents.width}x{latents.height}"
            return f"they are of a {size} video, the enhancer works at {self.width}x{self.height}"
        if latents.frames != self.frames_made(latents.frames):
            return f"the enhancer makes 4k+1 frames: {latents.frames} handed"
        return None

    @raises_out_of_device_memory
    def enhance_latents(
        self, latents: VideoLatents, height: int, width: int, prompt: str, seed: int, memory_level: int = 0
    ) -> np.ndarray:
        why_not = self.latents_refused(latents)
        if why_not:
            raise ValueError(f"the handed latents cannot start the enhancer: {why_not}")
        start = torch.from_numpy(latents.latents)[None]
        with self.lock:
            tile_vae(self.pipe, memory_level)
            out = enhance_latents(self.pipe, start, prompt, self.steps, self.strength, self.guidance_scale, seed)
        return resize(to_uint8(np.asarray(out)), width, height)
