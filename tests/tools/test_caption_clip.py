"""caption_clip keeps the tool contract; an empty description is an llm_schema error naming caption."""

from __future__ import annotations

from pydantic import BaseModel

from models.protocols import CaptionRequest, ModelReply
from tests.contracts import Bench, Failure, ToolContract, set_up_on
from tools.caption_clip import CaptionClip, CaptionClipConfig, CaptionClipInput


class SaysNothing:
    spec_id, reads_prompts, frames_shown = "says-nothing", True, 0

    def caption(self, request: CaptionRequest) -> ModelReply:
        return ModelReply('{"caption": "   "}')


class Reads:
    """A captioner that reads its prompt, as a model does, and keeps what it was given."""

    spec_id, reads_prompts, frames_shown = "reads", True, 0

    def caption(self, request: CaptionRequest) -> ModelReply:
        self.prompt = request.prompt
        return ModelReply('{"caption": "A clip."}')


class TestCaptionClip(ToolContract):
    tool_name = "caption_clip"

    def good_input(self, bench: Bench) -> BaseModel:
        return CaptionClipInput(clip=bench.ingested.clip)

    def failures(self, bench: Bench) -> list[Failure]:
        return [
            (
                set_up_on(CaptionClip(CaptionClipConfig()), SaysNothing()),
                self.good_input(bench),
                "llm_schema",
                "caption",
            )
        ]

    def test_renders_its_template_with_the_clip_measures_for_a_captioner_that_reads_it(self, bench: Bench) -> None:
        ctx, reads = bench.context(), Reads()
        out = set_up_on(CaptionClip(CaptionClipConfig()), reads)(self.good_input(bench), ctx)
        assert out.caption and [p.name for p in ctx.rendered] == ["caption_clip.j2"]
        assert "9 frames at 12.0 fps" in ctx.rendered[0].text == reads.prompt

    def test_the_metric_captioner_reads_no_prompt_and_none_is_rendered(self, bench: Bench) -> None:
        ctx = bench.context()
        assert bench.tool("caption_clip")(self.good_input(bench), ctx).caption and ctx.rendered == []
