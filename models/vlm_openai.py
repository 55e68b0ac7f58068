"""Qwen2.5-VL (or any vision-language model) at an OpenAI-compatible endpoint (vLLM, SGLang) as the clip
captioner and the key-frame and video judges: frames go as images, base64 data URLs in the user message's
content parts (the form vLLM's and SGLang's OpenAI servers take), before the rendered prompt; the answer is
asked under the tool's JSON schema, through the planner's OpenAIChat (its transport retries, deadline and
fallback from a refused response format). Answers are greedy (temperature 0), as a judge must be repeatable.

A video is shown as `video_frames` frames spread evenly over it (the first and last among them); the video
judge shows the same frames of the source and of the edit, so each pair compares like with like. Frames
are scaled down to at most `max_pixels` before they are sent (never up): the server's processor would
shrink them anyway, and the request stays small."""

from __future__ import annotations

import base64
import math
from typing import Annotated, Any, ClassVar

import cv2
import numpy as np
from pydantic import Field

from models.frames import resample, resize
from models.llm_openai import OpenAIChat, conversation
from models.protocols import AnswerSchema, CaptionRequest, Correction, JudgeRequest, ModelReply

# A key frame is sent lossless: the key-frame judge looks for small artifacts, and a JPEG's would be its own.
# A video's frames go as JPEG at quality 95: the video judge's 16 frames of bigbuckbunny.mp4 (597x336 after
# max_pixels) made a request of 7.9 MB as PNG, 1.7 MB as JPEG, at 42 dB PSNR (1.4 levels mean error): far
# below the compression the clip itself went through.
JPEG_QUALITY = 95


def fit(frame: np.ndarray, max_pixels: int) -> np.ndarray:
    """The frame scaled down (area-averaged, aspect kept) to at most max_pixels; a smaller one as it is."""
    h, w = frame.shape[:2]
    scale = math.sqrt(max_pixels / (h * w))
    if scale >= 1:
        return frame
    return resize(frame[None], max(1, int(w * scale)), max(1, int(h * scale)))[0]


def image_part(frame: np.ndarray, max_pixels: int, lossless: bool) -> dict[str, Any]:
    """One RGB uint8 frame as a chat content part: a PNG (lossless) or JPEG data URL."""
    bgr = cv2.cvtColor(fit(frame, max_pixels), cv2.COLOR_RGB2BGR)
    if lossless:
        ok, data = cv2.imencode(".png", bgr)
        mime = "image/png"
    else:
        ok, data = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        mime = "image/jpeg"
    if not ok:
        raise ValueError(f"cannot encode a {frame.shape} frame as {mime}")
    return {"type": "image_url", "image_url": {"url": f"data:{mime};base64,{base64.b64encode(data).decode()}"}}


class OpenAIVisionRole:
    """One role (captioner, key-frame judge, video judge) of a vision-language model at an endpoint."""

    reads_prompts = True  # it reads the rendered prompt
    answer_name: ClassVar[str]  # the name the JSON schema goes by in response_format
    identity = staticmethod(OpenAIChat.identity)

    def __init__(
        self,
        base_url: str,
        model: str = "default",  # what a server that serves one model (vLLM, SGLang) answers to
        api_key_env: str = "OPENAI_API_KEY",
        # One try. A 72B model reads 16 images (about 4k tokens) and writes a verdict of up to ~1.5k tokens:
        # tens of seconds on a loaded server, so more room than the planner's short text answer needs.
        request_timeout_s: float = 120.0,
        deadline_s: float = 300.0,  # all tries of one call together: a hung endpoint holds a call 5 minutes at most
        max_attempts: int = 5,
        structured_output: bool = True,  # False: never ask for json_schema (an endpoint known to mishandle it)
        # Frames of a video shown as images. 8: the same visual tokens as the in-process backend's 16 video frames
        # (Qwen2.5-VL merges video frames in pairs, images it does not), so a judge sees as much either way; the
        # video judge sends 16 images (source and edit), which vLLM's --limit-mm-per-prompt must allow.
        video_frames: Annotated[int, Field(ge=2)] = 8,
        max_pixels: int = 448 * 448,  # per image, as the in-process backend: 256 visual tokens at most
    ) -> None:
        self.chat = OpenAIChat(
            base_url, model, api_key_env, request_timeout_s, deadline_s, max_attempts, structured_output
        )
        self.spec_id, self.frames_shown, self.max_pixels = self.chat.spec_id, video_frames, max_pixels

    def video_parts(self, frames: np.ndarray) -> list[dict[str, Any]]:
        shown = resample(frames, min(self.frames_shown, len(frames)))
        return [image_part(f, self.max_pixels, lossless=False) for f in shown]

    def ask(
        self,
        images: list[dict[str, Any]],
        prompt: str,
        schema: AnswerSchema | None,
        corrections: tuple[Correction, ...],
    ) -> ModelReply:
        first = [{"role": "user", "content": [*images, {"type": "text", "text": prompt}]}]
        return self.chat.complete(conversation(first, corrections), schema, self.answer_name, temperature=0.0)


class OpenAICaptioner(OpenAIVisionRole):
    answer_name = "caption_answer"

    def caption(self, request: CaptionRequest) -> ModelReply:
        return self.ask(self.video_parts(request.frames), request.prompt, request.answer_schema, request.corrections)


class OpenAIImageJudge(OpenAIVisionRole):
    answer_name = "judge_answer"
    criteria: ClassVar[None] = None  # scores what the rubric asks

    def judge(self, request: JudgeRequest) -> ModelReply:
        images = [image_part(f, self.max_pixels, lossless=True) for f in (request.source, request.edited)]
        return self.ask(images, request.prompt, request.answer_schema, request.corrections)


class OpenAIVideoJudge(OpenAIVisionRole):
    answer_name = "judge_answer"
    criteria: ClassVar[None] = None  # scores what the rubric asks

    def judge(self, request: JudgeRequest) -> ModelReply:
        images = self.video_parts(request.source) + self.video_parts(request.edited)
        return self.ask(images, request.prompt, request.answer_schema, request.corrections)
