"""The captioner and judges at an OpenAI-compatible endpoint, against a real HTTP server on 127.0.0.1: the images
it receives are real PNG (key frames) and JPEG (video frames) files of the right frames, the rubric's schema is
asked as structured output, an endpoint without it is asked again in plain JSON with the problems named, and one
that cannot be reached is backend_unavailable with the tries' usage kept."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bench.fake_llm_server import Reply, ScriptedLLMServer, answer_schema_of, fitting_answer, images_in, text_of
from models.registry import build_backend
from models.vlm_openai import OpenAIVisionRole
from prompts.loader import PromptBook
from store.artifacts import ArtifactStore
from store.engine import open_engine
from tests.contracts import set_up_on
from tools.base import ToolContext, ToolError
from tools.caption_clip import CaptionClip, CaptionClipConfig, CaptionClipInput
from tools.judge import JudgeConfig, JudgeInput, JudgeKeyframe, JudgeVideo, rubric_criteria


def numbered_clip(frames: int, h: int = 48, w: int = 64) -> np.ndarray:
    """Frames that say which they are: frame k is a flat grey of level 10 * k, with a coloured corner."""
    clip = np.repeat(np.arange(frames, dtype=np.uint8)[:, None, None, None] * 10, h, 1).repeat(w, 2).repeat(3, 3)
    clip[:, : h // 4, : w // 4] = (200, 40, 40)
    return np.ascontiguousarray(clip)


def frame_number(image: np.ndarray) -> int:
    h, w = image.shape[:2]
    return round(float(np.median(image[h // 2 :, w // 2 :])) / 10)


@pytest.fixture
def ctx(tmp_path: Path) -> ToolContext:
    return ToolContext(io=ArtifactStore(tmp_path, open_engine(f"sqlite:///{tmp_path}/db.sqlite")), prompts=PromptBook())


def role(step: str, server: ScriptedLLMServer, **options: object) -> OpenAIVisionRole:
    spec = {"kind": "openai", "base_url": server.url, "model": "qwen-vl", "deadline_s": 5.0, **options}
    return build_backend(step, spec, pool=None)  # type: ignore[arg-type]


def judge_input(ctx: ToolContext, source: np.ndarray, edited: np.ndarray) -> JudgeInput:
    write = ctx.io.write_video if source.ndim == 4 else ctx.io.write_image
    args = (12.0,) if source.ndim == 4 else ()
    return JudgeInput(
        source=write(source, *args),
        edited=write(edited, *args),
        instruction="Make it sepia.",
        target_description="The clip in sepia.",
        category="global_style",
    )


def test_the_video_judge_sends_the_same_evenly_spaced_frames_of_both_videos_as_jpeg(ctx: ToolContext) -> None:
    source, edited = numbered_clip(17), numbered_clip(17)[:, :, :, ::-1].copy()  # the edit swaps R and B
    with ScriptedLLMServer(answer=fitting_answer) as server:
        judge = set_up_on(JudgeVideo(JudgeConfig()), role("video_judge", server))
        verdict = judge(judge_input(ctx, source, edited), ctx)
    body = server.requests[0]["body"]
    images = images_in(body)
    assert [mime for mime, _ in images] == ["image/jpeg"] * 16
    shown = [frame_number(image) for _, image in images]
    assert shown == [0, 2, 5, 7, 9, 11, 14, 16] * 2  # np.linspace(0, 16, 8) rounded, the same for both videos
    assert all(image[2, 2, 0] > 150 for _, image in images[:8]) and all(image[2, 2, 2] > 150 for _, image in images[8:])
    prompt = body["messages"][0]["content"][-1]
    assert prompt["type"] == "text" and prompt["text"].startswith("The first 8 images are frames of the source video")
    schema = answer_schema_of(body)
    assert body["response_format"]["json_schema"]["name"] == "judge_answer" and body["temperature"] == 0
    criteria = rubric_criteria(ctx, "judge_video.j2")
    assert list(schema["$defs"]["Scores"]["properties"]) == list(criteria) == list(verdict.scores)
    assert verdict.judge == "openai-chat:qwen-vl" and set(verdict.scores.values()) == {9.0}
    assert ctx.usage["prompt_tokens"] > 0 and ctx.usage["calls"][0]["response_format"] == "json_schema"


def test_the_keyframe_judge_sends_both_frames_as_lossless_png_scaled_within_max_pixels(ctx: ToolContext) -> None:
    small, large = numbered_clip(2)[1], numbered_clip(2, h=480, w=640)[1]
    with ScriptedLLMServer(answer=fitting_answer) as server:
        judge = set_up_on(JudgeKeyframe(JudgeConfig()), role("keyframe_judge", server, max_pixels=64 * 48))
        judge(judge_input(ctx, small, small[:, :, ::-1].copy()), ctx)
        judge(judge_input(ctx, large, large), ctx)
    (png, first), (_, second) = images_in(server.requests[0]["body"])
    assert png == "image/png" and np.array_equal(first, small) and np.array_equal(second, small[:, :, ::-1])
    scaled = [image for _, image in images_in(server.requests[1]["body"])]
    assert [image.shape for image in scaled] == [(48, 64, 3)] * 2  # 640x480 down to 64x48 pixels, aspect kept
    assert frame_number(scaled[0]) == 1


def test_the_captioner_sends_frames_then_its_prompt_under_the_caption_schema(ctx: ToolContext) -> None:
    clip = numbered_clip(5)
    with ScriptedLLMServer(answer=fitting_answer) as server:
        tool = set_up_on(CaptionClip(CaptionClipConfig()), role("captioner", server, video_frames=4))
        out = tool(CaptionClipInput(clip=ctx.io.write_video(clip, 12.0)), ctx)
    body = server.requests[0]["body"]
    assert [frame_number(image) for _, image in images_in(body)] == [0, 1, 3, 4]
    assert "The 4 images are frames of one video clip (5 frames at 12.0 fps)" in text_of(body["messages"][0]["content"])
    assert body["response_format"]["json_schema"]["name"] == "caption_answer"
    assert answer_schema_of(body)["required"] == ["caption"] and out.caption.startswith("A short clip")


def test_an_endpoint_without_structured_output_is_re_asked_with_the_problems_named(ctx: ToolContext) -> None:
    frames = numbered_clip(2)
    replies = [Reply("Lovely edit, 11 out of 10!"), fitting_answer({})]  # the second is a plan: no verdict either
    with ScriptedLLMServer(replies, refuse_formats=("json_schema",)) as server:
        judge = set_up_on(JudgeKeyframe(JudgeConfig(parse_attempts=3)), role("keyframe_judge", server))
        with pytest.raises(ToolError) as err:
            judge(judge_input(ctx, frames[0], frames[1]), ctx)
    assert err.value.kind == "llm_schema" and "3 tries" in err.value.detail
    formats = [r["body"].get("response_format", {}).get("type") for r in server.requests]
    assert formats == ["json_schema", "json_object", "json_object", "json_object"]  # refused once, then JSON mode
    last = server.requests[-1]["body"]["messages"]
    assert [m["role"] for m in last] == ["user", "assistant", "user", "assistant", "user"]
    assert last[1]["content"] == "Lovely edit, 11 out of 10!" and "no JSON object in the answer" in last[2]["content"]
    assert len(images_in(server.requests[-1]["body"])) == 2  # the images travel once, in the first turn
    assert [len(r["problems"]) > 0 for r in ctx.usage["rejected"]] == [True] * 3


def test_an_unreachable_judge_endpoint_is_backend_unavailable_with_its_usage(ctx: ToolContext) -> None:
    frames = numbered_clip(2)
    with ScriptedLLMServer([Reply(status=503)]) as server:
        judge = set_up_on(JudgeKeyframe(JudgeConfig()), role("keyframe_judge", server, deadline_s=1.0, max_attempts=2))
        with pytest.raises(ToolError) as err:
            judge(judge_input(ctx, frames[0], frames[1]), ctx)
    assert err.value.kind == "backend_unavailable" and err.value.field == "judge" and server.url in err.value.detail
    assert ctx.usage["transport_retries"] == 1 and len(server.requests) == 2
