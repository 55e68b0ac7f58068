"""Qwen2.5-VL through transformers: the clip captioner and the image and video judges. The three roles
share one resident model per checkpoint (ModelPool). Generation is greedy: a judge must be repeatable."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image
from qwen_vl_utils import smart_resize

from models.device_memory import raises_out_of_device_memory
from models.frames import resample, resize, torch_dtype
from models.pool import ModelPool
from models.protocols import JudgeRequest


@dataclass
class LoadedQwenVL:
    model: Any
    processor: Any
    lock: threading.Lock  # one generate at a time per model: concurrent episodes take turns


def load_qwen_vl(path: str, device: str, dtype: str) -> LoadedQwenVL:
    from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration

    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(path, dtype=torch_dtype(dtype)).to(device).eval()
    return LoadedQwenVL(model, AutoProcessor.from_pretrained(path), threading.Lock())


class QwenVL:
    """One role of a shared Qwen2.5-VL: turns frames and a prompt into text."""

    def __init__(
        self,
        path: str,
        device: str = "cuda",
        dtype: str = "bfloat16",
        max_new_tokens: int = 384,
        max_pixels: int = 448 * 448,
        video_frames: int = 16,
        pool: ModelPool | None = None,
    ) -> None:
        self.path, self.device, self.max_new_tokens = path, device, max_new_tokens
        self.max_pixels, self.video_frames = max_pixels, video_frames
        pool = pool or ModelPool()
        self.loaded: LoadedQwenVL = pool.get(
            ("qwen2_5_vl", path, device, dtype), lambda: load_qwen_vl(path, device, dtype)
        )
        self.spec_id = f"qwen2.5-vl:{path.rstrip('/').split('/')[-1]}"

    def _fit(self, frames: np.ndarray) -> np.ndarray:
        """Resize to the reference implementation's sizes (multiples of 28 within max_pixels)."""
        h, w = frames.shape[-3:-1]
        new_h, new_w = smart_resize(h, w, factor=28, min_pixels=28 * 28 * 4, max_pixels=self.max_pixels)
        return resize(frames.reshape(-1, h, w, 3), new_w, new_h)

    def _video(self, frames: np.ndarray) -> np.ndarray:
        count = max(2, min(self.video_frames, len(frames)) // 2 * 2)  # Qwen pairs frames in time
        return self._fit(resample(frames, count))

    @raises_out_of_device_memory
    def generate(self, prompt: str, images: list[np.ndarray] = (), videos: list[np.ndarray] = ()) -> str:  # type: ignore[assignment]
        content = [{"type": "image"} for _ in images] + [{"type": "video"} for _ in videos]
        content.append({"type": "text", "text": prompt})
        proc = self.loaded.processor
        text = proc.apply_chat_template([{"role": "user", "content": content}], add_generation_prompt=True)
        inputs = proc(
            text=[text],
            images=[Image.fromarray(self._fit(i)[0]) for i in images] or None,
            videos=[self._video(v) for v in videos] or None,
            return_tensors="pt",
        ).to(self.device)
        with self.loaded.lock, torch.inference_mode():
            out = self.loaded.model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False)
        return proc.batch_decode(out[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)[0].strip()


class QwenVLCaptioner(QwenVL):
    def caption(self, frames: np.ndarray, fps: float, prompt: str) -> str:
        return self.generate(prompt, videos=[frames])


class QwenVLImageJudge(QwenVL):
    def judge(self, request: JudgeRequest) -> str:
        return self.generate(request.prompt, images=[request.source, request.edited])


class QwenVLVideoJudge(QwenVL):
    def judge(self, request: JudgeRequest) -> str:
        return self.generate(request.prompt, videos=[request.source, request.edited])
