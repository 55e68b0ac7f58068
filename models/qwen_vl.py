"""Qwen2.5-VL through transformers: the clip captioner, the instruction planner and the image and video
judges. The roles share one resident model per checkpoint (ModelPool). Generation is greedy (a judge must be
repeatable), the planner's sampled from a seed.
An answer is decoded under the JSON schema the tool sends (xgrammar masks every token the schema does
not allow), so it always parses, whatever the weights."""

from __future__ import annotations

import contextlib
import json
import threading
import time
import zlib
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
import xgrammar
from PIL import Image
from qwen_vl_utils import smart_resize
from transformers import LogitsProcessorList
from xgrammar.contrib.hf import LogitsProcessor as GrammarLogitsProcessor

from models.device_memory import raises_out_of_device_memory
from models.frames import resample, resize, torch_dtype
from models.pool import ModelPool
from models.protocols import AnswerSchema, CaptionRequest, Correction, JudgeRequest, ModelReply, PlanRequest


class AnswerTruncatedError(RuntimeError):
    """max_new_tokens ran out before the answer's JSON closed: the budget is too small for the schema."""


@dataclass
class LoadedQwenVL:
    model: Any
    processor: Any
    lock: threading.Lock  # one generate at a time per model: concurrent episodes take turns
    compiler: xgrammar.GrammarCompiler  # compiles answer schemas against this tokenizer
    stop_ids: frozenset[int]  # the tokens that end generation; the grammar allows them once the JSON is closed
    grammars: dict[str, xgrammar.CompiledGrammar] = field(default_factory=dict)  # schema JSON -> compiled

    def grammar(self, schema: AnswerSchema) -> xgrammar.CompiledGrammar:
        """The schema's grammar, compiled once (a run has one schema per role). Strings are one line, and
        there is no free whitespace, so every answer the grammar allows is finite."""
        key = json.dumps(schema, sort_keys=True)
        if key not in self.grammars:
            self.grammars[key] = self.compiler.compile_json_schema(key, any_whitespace=False)
        return self.grammars[key]


def load_qwen_vl(path: str, device: str, dtype: str) -> LoadedQwenVL:
    from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration

    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(path, dtype=torch_dtype(dtype)).to(device).eval()
    processor = AutoProcessor.from_pretrained(path)
    eos = model.generation_config.eos_token_id
    stop_ids = frozenset([eos] if isinstance(eos, int) else eos)
    tokenizer_info = xgrammar.TokenizerInfo.from_huggingface(
        processor.tokenizer,
        vocab_size=model.get_output_embeddings().weight.shape[0],  # the logits' width, padding included
        stop_token_ids=sorted(stop_ids),
    )
    # xgrammar 0.2.8's own cache fails on a repetition longer than 128 (a 200-character reason) in its
    # grammar hasher ("per_rule_fsm_hashes ... has_value"); LoadedQwenVL.grammar caches by schema instead.
    compiler = xgrammar.GrammarCompiler(tokenizer_info, cache_enabled=False)
    return LoadedQwenVL(model, processor, threading.Lock(), compiler, stop_ids)


@dataclass(frozen=True)
class Sampling:
    temperature: float
    seed: int


@dataclass(frozen=True)
class Answer:
    text: str
    prompt_tokens: int
    completion_tokens: int


class QwenVL:
    """One role of a shared Qwen2.5-VL: turns frames and a prompt into text."""

    reads_prompts = True  # every role reads its rendered prompt
    frames_shown = 0  # a video goes to the model as a video (its frames paired in time), not as images

    def __init__(
        self,
        path: str,
        device: str = "cuda",
        dtype: str = "bfloat16",
        # Enough for a real model's verdict or caption; the profiles set what covers the longest answer
        # their schemas allow (a budget too small for a schema is an AnswerTruncatedError, never half a verdict).
        max_new_tokens: int = 384,
        max_pixels: int = 448 * 448,
        video_frames: int = 16,
        pool: ModelPool | None = None,
    ) -> None:
        self.path, self.device, self.max_new_tokens = path, device, max_new_tokens
        self.max_pixels, self.video_frames = max_pixels, video_frames
        pool = pool or ModelPool()
        self.loaded: LoadedQwenVL = pool.get(
            self.model_key(path, device, dtype), lambda: load_qwen_vl(path, device, dtype)
        )
        self.spec_id = self.identity(path)

    @staticmethod
    def identity(path: str, **_: Any) -> str:
        return f"qwen2.5-vl:{path.rstrip('/').split('/')[-1]}"

    @staticmethod
    def model_key(path: str, device: str, dtype: str) -> tuple[str, ...]:
        """The resident model's identity: every role built with the same key shares one copy of the weights."""
        return ("qwen2_5_vl", path, device, dtype)

    def _fit(self, frames: np.ndarray) -> np.ndarray:
        """Resize to the reference implementation's sizes (multiples of 28 within max_pixels)."""
        h, w = frames.shape[-3:-1]
        new_h, new_w = smart_resize(h, w, factor=28, min_pixels=28 * 28 * 4, max_pixels=self.max_pixels)
        return resize(frames.reshape(-1, h, w, 3), new_w, new_h)

    def _video(self, frames: np.ndarray) -> np.ndarray:
        count = max(2, min(self.video_frames, len(frames)) // 2 * 2)  # Qwen pairs frames in time
        return self._fit(resample(frames, count))

    def prepare_inputs(
        self,
        prompt: str,
        images: list[np.ndarray],
        videos: list[np.ndarray],
        system: str | None = None,
        turns: tuple[tuple[str, str], ...] = (),
    ) -> Any:
        """One user turn (images, videos, then the prompt) as the model's input tensors; with a system message
        before it, and later turns after it (each an answer of the model and the user's reply to it)."""
        content = [{"type": "image"} for _ in images] + [{"type": "video"} for _ in videos]
        content.append({"type": "text", "text": prompt})
        messages: list[dict[str, Any]] = [{"role": "system", "content": system}] if system else []
        messages.append({"role": "user", "content": content})
        for answer, reply in turns:
            messages += [{"role": "assistant", "content": answer}, {"role": "user", "content": reply}]
        proc = self.loaded.processor
        text = proc.apply_chat_template(messages, add_generation_prompt=True)
        return proc(
            text=[text],
            images=[Image.fromarray(self._fit(i)[0]) for i in images] or None,
            videos=[self._video(v) for v in videos] or None,
            return_tensors="pt",
        ).to(self.device)

    def reply(
        self,
        prompt: str,
        schema: AnswerSchema | None,
        images: list[np.ndarray] = (),  # type: ignore[assignment]
        videos: list[np.ndarray] = (),  # type: ignore[assignment]
        corrections: tuple[Correction, ...] = (),
    ) -> ModelReply:
        """The answer to the prompt (and to each correction after it), greedy, with its usage; with a schema,
        a JSON object that the schema accepts."""
        started = time.monotonic()
        answer = self.answer(prompt, schema, images, videos, turns=turns(corrections))
        return ModelReply(answer.text, usage(answer, started))

    @raises_out_of_device_memory
    def answer(
        self,
        prompt: str,
        schema: AnswerSchema | None,
        images: list[np.ndarray] = (),  # type: ignore[assignment]
        videos: list[np.ndarray] = (),  # type: ignore[assignment]
        system: str | None = None,
        turns: tuple[tuple[str, str], ...] = (),
        sampling: Sampling | None = None,
    ) -> Answer:
        """The answer and its token counts: greedy, or sampled at sampling.temperature from sampling.seed."""
        inputs = self.prepare_inputs(prompt, images, videos, system, turns)
        # Sampling draws from torch's global generator (generate takes none of its own): seeded and restored
        # around the call, under the lock, so an answer depends on its seed alone.
        seeded = torch.random.fork_rng() if sampling else contextlib.nullcontext()
        with self.loaded.lock, torch.inference_mode(), seeded:
            processors = LogitsProcessorList()
            if schema is not None:  # a processor holds one matcher's state: a new one for every generate
                processors.append(GrammarLogitsProcessor(self.loaded.grammar(schema)))
            options: dict[str, Any] = {"do_sample": False}
            if sampling:
                torch.manual_seed(sampling.seed)
                # top_k and top_p off: a checkpoint's generation_config may make sampling all but greedy
                options = {"do_sample": True, "temperature": sampling.temperature, "top_k": 0, "top_p": 1.0}
            out = self.loaded.model.generate(
                **inputs, max_new_tokens=self.max_new_tokens, logits_processor=processors, **options
            )
        answer = out[0, inputs["input_ids"].shape[1] :]
        if schema is not None and int(answer[-1]) not in self.loaded.stop_ids:
            raise AnswerTruncatedError(
                f"{self.spec_id}: max_new_tokens={self.max_new_tokens} ran out before the answer's JSON closed; "
                "raise max_new_tokens in this backend's spec (or bound the answer more tightly)"
            )
        text = self.loaded.processor.decode(answer, skip_special_tokens=True).strip()
        return Answer(text, int(inputs["input_ids"].shape[1]), len(answer))


def turns(corrections: tuple[Correction, ...]) -> tuple[tuple[str, str], ...]:
    return tuple((c.answer, c.reask) for c in corrections)


def usage(answer: Answer, started: float) -> dict[str, float | int]:
    return {
        "latency_s": round(time.monotonic() - started, 3),
        "prompt_tokens": answer.prompt_tokens,
        "completion_tokens": answer.completion_tokens,
    }


class QwenVLCaptioner(QwenVL):
    def caption(self, request: CaptionRequest) -> ModelReply:
        videos = [request.frames]
        return self.reply(request.prompt, request.answer_schema, videos=videos, corrections=request.corrections)


class QwenVLImageJudge(QwenVL):
    criteria: ClassVar[None] = None  # scores what the rubric asks

    def judge(self, request: JudgeRequest) -> ModelReply:
        images = [request.source, request.edited]
        return self.reply(request.prompt, request.answer_schema, images=images, corrections=request.corrections)


class QwenVLVideoJudge(QwenVL):
    criteria: ClassVar[None] = None  # scores what the rubric asks

    def judge(self, request: JudgeRequest) -> ModelReply:
        videos = [request.source, request.edited]
        return self.reply(request.prompt, request.answer_schema, videos=videos, corrections=request.corrections)


def plan_seed(request: PlanRequest) -> int:
    return zlib.crc32(f"{request.clip_seed}:{request.category}:{request.slot}".encode())


class QwenVLPlanner(QwenVL):
    """The instruction planner on the resident VLM: it sees frames of the clip (as the captioner does) beside
    the prompts, and answers under the request's schema. Sampled, seeded by the clip, the category and the
    attempt's slot, so a clip's episodes get different instructions and a resumed run the same ones."""

    sees_frames = True

    def __init__(
        self,
        path: str,
        device: str = "cuda",
        dtype: str = "bfloat16",
        max_new_tokens: int = 384,
        max_pixels: int = 448 * 448,
        video_frames: int = 16,
        temperature: float = 0.9,  # as the OpenAI-compatible planner: varied instructions, still on topic
        pool: ModelPool | None = None,
    ) -> None:
        super().__init__(path, device, dtype, max_new_tokens, max_pixels, video_frames, pool)
        # The same spec_id as the captioner and judges on these weights: the local executor's device lock is
        # keyed by it, and one resident model serves one call at a time. The temperature is keyed as an option.
        self.temperature = temperature

    def plan(self, request: PlanRequest) -> ModelReply:
        started = time.monotonic()
        answer = self.answer(
            request.user_prompt,
            request.answer_schema,
            videos=[request.frames] if request.frames is not None else [],
            system=request.system_prompt,
            turns=turns(request.corrections),
            sampling=Sampling(self.temperature, plan_seed(request)) if self.temperature > 0 else None,
        )
        return ModelReply(answer.text, usage(answer, started))
