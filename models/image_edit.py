"""Key-frame editors through diffusers (Ditto step 3): QwenImageEditPipeline, or FluxKontextPipeline. The fast
preset fuses a step-distilled LoRA (Qwen-Image-Lightning) into Qwen-Image-Edit and samples 8 steps at
true_cfg_scale 1 (no negative pass) on the schedule the LoRA was distilled with (`flow_shift`)."""

from __future__ import annotations

import inspect
import math
import threading
import types
from typing import Any

import numpy as np
import torch
from diffusers.pipelines.qwenimage.pipeline_qwenimage_edit import QwenImageEditPipeline, calculate_dimensions
from PIL import Image

from models.device_memory import raises_out_of_device_memory
from models.frames import resize, to_uint8
from models.pipelines import (
    Attention,
    Denoiser,
    Quantization,
    attention_mark,
    check_quantization,
    load_pipeline,
    place_pipeline,
    prepare_denoiser,
)


def _load(
    cls_name: str, path: str, device: str, dtype: str, cpu_offload: bool, denoiser: Denoiser
) -> tuple[Any, Attention]:
    """The placed pipeline, and the attention backend that runs (models/pipelines.set_attention)."""
    check_quantization("editor", device, denoiser.quantization)
    pipe = load_pipeline(cls_name, path, dtype)
    attention = prepare_denoiser(pipe, "editor", device, denoiser)
    return place_pipeline(pipe, device, cpu_offload), attention


def fixed_shift(pipe: Any, shift: float) -> None:
    """The flow-matching schedule shifted by `shift` at every image size: Qwen-Image-Lightning was distilled
    with shift 3 (base_shift = max_shift = log 3), where the base model shifts by image size."""
    config = {**pipe.scheduler.config, "base_shift": math.log(shift), "max_shift": math.log(shift)}
    pipe.scheduler = type(pipe.scheduler).from_config({**config, "shift_terminal": None})


# diffusers fixes QwenImageEditPipeline's working area at 1024*1024 inside __call__ (the condition image, its
# latents and their positions all follow calculate_dimensions(1024 * 1024, ratio)) and has no argument for it:
# a 1024x1024 condition costs a tiny test model 20 s a call, and an out-of-memory retry could not work smaller.
# huggingface/diffusers#13660 adds `image_area` to QwenImageEditPlusPipeline; until this pipeline has one, the
# call runs QwenImageEditPipeline's own code with that one name bound to the area, and says so where an upgrade
# changes what it relies on.
AREA_ARGUMENT = "image_area"


def qwen_edit_at_area(pipe: QwenImageEditPipeline, area: int, **call_args: Any) -> Any:
    """QwenImageEditPipeline's own __call__ at a working area of `area` pixels, for this call only: the module
    is never touched, so editors at different areas never race."""
    code = inspect.unwrap(QwenImageEditPipeline.__call__)
    if AREA_ARGUMENT in inspect.signature(code).parameters:  # diffusers has the hook now: use it
        with torch.no_grad():
            return pipe(**call_args, **{AREA_ARGUMENT: area})
    if "calculate_dimensions" not in code.__code__.co_names:
        raise RuntimeError(
            "this diffusers' QwenImageEditPipeline.__call__ no longer sizes its work with calculate_dimensions: "
            "models/image_edit.py cannot set its working area (see huggingface/diffusers#13660)"
        )
    scope = {**code.__globals__, "calculate_dimensions": lambda _fixed, ratio: calculate_dimensions(area, ratio)}
    at_area = types.FunctionType(code.__code__, scope, code.__name__, code.__defaults__, code.__closure__)
    at_area.__kwdefaults__ = code.__kwdefaults__
    with torch.no_grad():
        return at_area(pipe, **call_args)


class QwenImageEditor:
    categories = None  # an instruction-following model: every edit category of the taxonomy

    def __init__(
        self,
        path: str,
        device: str = "cuda",
        dtype: str = "bfloat16",
        steps: int = 50,
        true_cfg_scale: float = 4.0,
        negative_prompt: str = " ",
        target_area: int = 1024 * 1024,
        cpu_offload: bool = False,
        lora_path: str | None = None,
        lora_scale: float = 1.0,
        flow_shift: float | None = None,
        attention: Attention = "native",
        quantization: Quantization = "none",
    ) -> None:
        denoiser = Denoiser(lora_path, lora_scale, attention, quantization)
        self.pipe, runs = _load("QwenImageEditPipeline", path, device, dtype, cpu_offload, denoiser)
        if flow_shift is not None:
            fixed_shift(self.pipe, flow_shift)
        self.steps, self.true_cfg_scale, self.negative_prompt = steps, true_cfg_scale, negative_prompt
        self.target_area = target_area  # the pipeline works at ~1 megapixel; tiny models need far less
        self.lock = threading.Lock()
        self.spec_id = self.identity(path, device, steps, true_cfg_scale, runs)

    @staticmethod
    def identity(path: str, device: str, steps: int, true_cfg_scale: float, attention: Attention, **_: Any) -> str:
        name = path.rstrip("/").split("/")[-1]
        return f"qwen-image-edit:{name}:{steps}steps:cfg{true_cfg_scale}{attention_mark(attention, device)}"

    @raises_out_of_device_memory
    def edit(self, image: np.ndarray, instruction: str, seed: int, memory_level: int = 0) -> np.ndarray:
        with self.lock, torch.inference_mode():
            out = qwen_edit_at_area(
                self.pipe,
                self.target_area // 2**memory_level,  # half the pixels per memory level
                image=Image.fromarray(image),
                prompt=instruction,
                negative_prompt=self.negative_prompt,
                true_cfg_scale=self.true_cfg_scale,
                num_inference_steps=self.steps,
                generator=torch.Generator("cpu").manual_seed(seed),
                output_type="np",
            ).images[0]
        return resize(to_uint8(np.asarray(out))[None], image.shape[1], image.shape[0])[0]


class FluxKontextEditor:
    categories = None  # an instruction-following model: every edit category of the taxonomy

    def __init__(
        self,
        path: str,
        device: str = "cuda",
        dtype: str = "bfloat16",
        steps: int = 28,
        guidance_scale: float = 2.5,
        max_side: int = 1024,
        max_sequence_length: int = 512,
        cpu_offload: bool = False,
        attention: Attention = "native",
        quantization: Quantization = "none",
    ) -> None:
        denoiser = Denoiser(attention=attention, quantization=quantization)
        self.pipe, runs = _load("FluxKontextPipeline", path, device, dtype, cpu_offload, denoiser)
        self.steps, self.guidance_scale, self.max_side = steps, guidance_scale, max_side
        self.max_sequence_length = max_sequence_length  # T5 tokens of the instruction
        self.lock = threading.Lock()
        self.spec_id = self.identity(path, device, steps, guidance_scale, runs)

    @staticmethod
    def identity(path: str, device: str, steps: int, guidance_scale: float, attention: Attention, **_: Any) -> str:
        name = path.rstrip("/").split("/")[-1]
        return f"flux-kontext:{name}:{steps}steps:cfg{guidance_scale}{attention_mark(attention, device)}"

    @raises_out_of_device_memory
    def edit(self, image: np.ndarray, instruction: str, seed: int, memory_level: int = 0) -> np.ndarray:
        h, w = image.shape[:2]
        scale = self.max_side * 2 ** (-memory_level / 2) / max(h, w)  # half the pixels per level
        height, width = max(16, round(h * scale / 16) * 16), max(16, round(w * scale / 16) * 16)
        with self.lock, torch.inference_mode():
            out = self.pipe(
                image=Image.fromarray(resize(image[None], width, height)[0]),  # condition at the working size
                prompt=instruction,
                height=height,
                width=width,
                max_area=height * width,  # else the pipeline rescales the output to a megapixel
                guidance_scale=self.guidance_scale,
                num_inference_steps=self.steps,
                _auto_resize=False,
                max_sequence_length=self.max_sequence_length,
                generator=torch.Generator("cpu").manual_seed(seed),
                output_type="np",
            ).images[0]
        return resize(to_uint8(np.asarray(out))[None], w, h)[0]
