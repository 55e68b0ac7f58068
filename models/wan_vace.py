"""Propagation with diffusers' WanVACEPipeline: the edited key frame is the reference image, the depth
video is the control, the target description is the prompt (Ditto step 5). A distillation LoRA
(CausVid, lightx2v) can be fused for few-step sampling; at guidance_scale 1 diffusers runs no CFG (one
transformer pass per step). FP8 and the attention backend: models/pipelines.py. The VAE runs in float32 unless
`vae_dtype: bfloat16` (the fast preset): about half the time and memory of a video's encodes and decode, at a
difference from float32 that tests/models/test_fast_preset.py bounds on the tiny model.

The control strength weighs the depth alone: its frames are blended toward VACE's neutral grey, the input
VACE is given for frames it should generate with no control, so at 0 the video follows only the reference
and the prompt. The pipeline's `conditioning_scale` is not that knob: it scales VACE's whole context stream,
in which the reference frame is one more frame beside the depth, so lowering it loosens the edited key
frame's hold as much as the depth's."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import torch
from diffusers import WanVACEPipeline
from diffusers.pipelines.wan.pipeline_wan_vace import retrieve_latents
from PIL import Image

from models.device_memory import raises_out_of_device_memory
from models.frames import resize, to_pil, to_uint8, torch_dtype, wan_frame_count
from models.pipelines import (
    Attention,
    Denoiser,
    Quantization,
    VaeDtype,
    attention_mark,
    check_quantization,
    load_pipeline,
    place_pipeline,
    prepare_denoiser,
    tile_vae,
)
from models.protocols import VideoLatents

BLANK_SHAPES = 8  # blank halves a pipeline keeps: one per clip shape a run makes (a few memory levels)


class WanVACEFullMaskPipeline(WanVACEPipeline):
    """WanVACEPipeline that encodes the blank half of a full mask once per shape. VACE's context is the control
    video split by the mask into the part to keep (`video * (1 - mask)`) and the part to generate
    (`video * mask`), each VAE-encoded. Ditto's mask is all ones (every pixel generated), so the part to keep is
    an all-zeros video: upstream encodes it on every call, a VAE encode of the whole clip whose latents are the
    same for every call of one shape. This overrides WanVACEPipeline.prepare_video_latents
    (diffusers 0.42) for that case only and takes those latents from a cache keyed by what they depend on: the
    video's shape, the VAE's dtype and device, and whether it encodes in tiles (memory_level > 0); any other mask
    goes to upstream's method unchanged. The rest is upstream's method as it is: the part to generate, then each
    reference frame, encoded and normalised."""

    # Made on first use: a pipeline's __init__ takes its registered modules only (from_pretrained reads it).
    blank_latents: dict[tuple[Any, ...], torch.Tensor]

    def prepare_video_latents(
        self,
        video: torch.Tensor,
        mask: torch.Tensor,
        reference_images: list[list[torch.Tensor]] | None = None,
        generator: torch.Generator | list[torch.Generator] | None = None,
        device: torch.device | None = None,
    ) -> torch.Tensor:
        if mask is None or video.shape[0] != 1 or not bool((mask > 0.5).all()) or reference_images is None:
            return super().prepare_video_latents(video, mask, reference_images, generator, device)
        device = device or self._execution_device
        vae_dtype = self.vae.dtype
        video = video.to(dtype=vae_dtype)
        keep = self.blank_part_latents(video, generator, device)
        latent = torch.cat([keep, self.normalised_latents(video, generator, device)], dim=1)[0]
        for image in reference_images[0]:
            reference = self.normalised_latents(image.to(dtype=vae_dtype)[None, :, None], generator, device)[0]
            latent = torch.cat([torch.cat([reference, torch.zeros_like(reference)], dim=0), latent], dim=1)
        return latent[None]

    def normalised_latents(self, video: torch.Tensor, generator: Any, device: torch.device) -> torch.Tensor:
        """Upstream's encode and normalisation, in float32 then back to the VAE's dtype, as it does them."""
        space = latent_space(self)
        mean = torch.tensor(space["latents_mean"], device=device, dtype=torch.float32).view(1, -1, 1, 1, 1)
        scale = 1.0 / torch.tensor(space["latents_std"], device=device, dtype=torch.float32).view(1, -1, 1, 1, 1)
        latents = retrieve_latents(self.vae.encode(video), generator, sample_mode="argmax")
        return ((latents.float() - mean) * scale).to(self.vae.dtype)

    def blank_part_latents(self, video: torch.Tensor, generator: Any, device: torch.device) -> torch.Tensor:
        key = (tuple(video.shape), video.dtype, str(device), bool(getattr(self.vae, "use_tiling", False)))
        cache = self.__dict__.setdefault("blank_latents", {})
        if key not in cache:
            if len(cache) >= BLANK_SHAPES:
                cache.clear()
            cache[key] = self.normalised_latents(torch.zeros_like(video), generator, device)
        return cache[key]


def latent_space(pipe: Any) -> dict[str, Any]:
    """What a Wan pipeline's latents mean: its VAE's channels, normalisation and scale factors. Two pipelines can
    hand latents to each other only where these are equal (Wan2.1's VAE: Wan2.1-VACE, Wan2.1-T2V and Wan2.2
    A14B; not Wan2.2 TI2V-5B's, 48 channels at 16x)."""
    config = pipe.vae.config
    return {
        "z_dim": int(config.z_dim),
        "latents_mean": [float(v) for v in config.latents_mean],
        "latents_std": [float(v) for v in config.latents_std],
        "scale_factor_temporal": int(pipe.vae_scale_factor_temporal),
        "scale_factor_spatial": int(pipe.vae_scale_factor_spatial),
    }


def load_wan_pipeline(
    cls: str | type,
    path: str,
    dtype: str,
    vae_dtype: VaeDtype,
    flow_shift: float | None,
    step: str,
    device: str,
    denoiser: Denoiser,
) -> tuple[Any, Attention]:
    """The pipeline with its denoiser prepared (LoRA, attention, quantization), not yet placed, and the attention
    backend that runs."""
    check_quantization(step, device, denoiser.quantization)
    pipe = load_pipeline(cls, path, dtype)
    prepare_wan_pipeline(pipe, vae_dtype, flow_shift)
    return pipe, prepare_denoiser(pipe, step, device, denoiser)


def prepare_wan_pipeline(pipe: Any, vae_dtype: VaeDtype, flow_shift: float | None) -> None:
    """The VAE in its dtype (the checkpoint's dtype is the denoiser's), the scheduler at the shift asked for."""
    pipe.vae.to(torch_dtype(vae_dtype))
    if flow_shift is not None:
        pipe.scheduler = type(pipe.scheduler).from_config(
            pipe.scheduler.config, shift=flow_shift, flow_shift=flow_shift
        )


NEUTRAL = 0.5  # VACE's "no control here": its preprocessing fills frames to generate freely with 0 in [-1, 1]


def depth_control(depth: np.ndarray, strength: float) -> np.ndarray:
    """The control video (uint8 [T,H,W,3]) of a depth video in [0, 1], blended toward neutral grey by strength."""
    return to_uint8(NEUTRAL + strength * (depth.astype(np.float32) - NEUTRAL))[..., None].repeat(3, axis=-1)


def generate_video(
    pipe: Any,
    control: np.ndarray,
    reference: np.ndarray,
    prompt: str,
    negative_prompt: str,
    steps: int,
    guidance_scale: float,
    seed: int,
) -> tuple[np.ndarray, torch.Tensor]:
    """One VACE call as the backend makes it (bench/gpu_costs.py times this too): every pixel of every frame of
    the control video's size generated, the reference frame beside it. The frames as floats in [0, 1], and the
    latents the pipeline decoded them from ([1, C, T', H', W'], normalised; the reference frame's taken off, as
    the pipeline takes it off before its decode), kept from its last step's callback."""
    frames, height, width = control.shape[:3]
    final: dict[str, torch.Tensor] = {}

    def keep_latents(_pipe: Any, _step: int, _timestep: Any, tensors: dict[str, torch.Tensor]) -> dict[str, Any]:
        final["latents"] = tensors["latents"]
        return {}

    with torch.inference_mode():
        video = pipe(
            video=to_pil(control),
            mask=[Image.new("L", (width, height), 255)] * frames,  # generate every pixel
            reference_images=[Image.fromarray(reference)],
            prompt=prompt,
            negative_prompt=negative_prompt,
            height=height,
            width=width,
            num_frames=frames,
            num_inference_steps=steps,
            guidance_scale=guidance_scale,
            generator=torch.Generator("cpu").manual_seed(seed),
            output_type="np",
            callback_on_step_end=keep_latents,
        ).frames[0]
    return video, final["latents"][:, :, 1:]  # one reference frame, first in time


class WanVacePropagator:
    categories = None  # an instruction-following model: every edit category of the taxonomy

    def __init__(
        self,
        path: str,
        device: str = "cuda",
        dtype: str = "bfloat16",
        steps: int = 4,
        guidance_scale: float = 1.2,
        flow_shift: float | None = 2.0,
        height: int = 480,
        width: int = 832,
        num_frames: int = 81,
        negative_prompt: str = "",
        lora_path: str | None = None,
        lora_scale: float = 1.0,
        cpu_offload: bool = False,
        attention: Attention = "native",
        quantization: Quantization = "none",
        vae_dtype: VaeDtype = "float32",
    ) -> None:
        denoiser = Denoiser(lora_path, lora_scale, attention, quantization)
        pipe, runs = load_wan_pipeline(
            WanVACEFullMaskPipeline, path, dtype, vae_dtype, flow_shift, "propagator", device, denoiser
        )
        self.pipe = place_pipeline(pipe, device, cpu_offload)
        self.device, self.steps, self.guidance_scale = device, steps, guidance_scale
        self.height, self.width, self.num_frames = height, width, wan_frame_count(num_frames)
        self.negative_prompt = negative_prompt
        self.lock = threading.Lock()
        self.spec_id = self.identity(path, device, lora_path, steps, guidance_scale, flow_shift, runs)

    @staticmethod
    def identity(
        path: str,
        device: str,
        lora_path: str | None,
        steps: int,
        guidance_scale: float,
        flow_shift: float | None,
        attention: Attention,
        **_: Any,
    ) -> str:
        name = path.rstrip("/").split("/")[-1]
        lora = f"+lora:{lora_path.rstrip('/').split('/')[-1]}" if lora_path else ""
        settings = f"{steps}steps:cfg{guidance_scale}:shift{flow_shift}{attention_mark(attention, device)}"
        return f"wan-vace:{name}{lora}:{settings}"

    def frames_made(self, frames: int) -> int:
        return min(wan_frame_count(frames), self.num_frames)

    def propagate(
        self,
        source: np.ndarray,
        edited_keyframe: np.ndarray,
        keyframe_index: int,
        depth: np.ndarray | None,
        prompt: str,
        seed: int,
        memory_level: int = 0,
        control_strength: float | None = 1.0,
        category: str = "",
    ) -> np.ndarray:
        return self.propagate_latents(
            source, edited_keyframe, keyframe_index, depth, prompt, seed, memory_level, control_strength, category
        )[0]

    @raises_out_of_device_memory
    def propagate_latents(
        self,
        source: np.ndarray,
        edited_keyframe: np.ndarray,
        keyframe_index: int,
        depth: np.ndarray | None,
        prompt: str,
        seed: int,
        memory_level: int = 0,
        control_strength: float | None = 1.0,
        category: str = "",  # the prompt says what the edit is
    ) -> tuple[np.ndarray, VideoLatents]:
        if depth is None or control_strength is None:
            raise ValueError("WanVACE propagation needs a depth video: configure backends.depth")
        num_frames = len(source)
        if num_frames != self.frames_made(num_frames):
            raise ValueError(f"WanVACE makes 4k+1 frames, at most {self.num_frames}: {num_frames} asked for")
        control = resize(depth_control(depth, control_strength), self.width, self.height)
        reference = resize(edited_keyframe[None], self.width, self.height)[0]
        with self.lock:
            tile_vae(self.pipe, memory_level)
            frames, latents = generate_video(
                self.pipe, control, reference, prompt, self.negative_prompt, self.steps, self.guidance_scale, seed
            )
        out = to_uint8(np.asarray(frames))
        # float16 on the host: normalised latents are of order 1, where float16 keeps 11 bits, more than the
        # bfloat16 the enhancer's transformer reads them in (8); 12 MB for a 1280x720x101 video.
        handed = VideoLatents(
            latents=latents[0].to("cpu", torch.float16).numpy(),
            space=latent_space(self.pipe),
            height=self.height,
            width=self.width,
            frames=num_frames,
        )
        return resize(out, source.shape[2], source.shape[1]), handed
