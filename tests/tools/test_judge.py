"""judge_keyframe and judge_video keep the tool contract; an answer that never parses is llm_schema naming
the answer, and an edited video that does not match its source is bad input naming it."""

from __future__ import annotations

from pydantic import BaseModel

from models.protocols import JudgeRequest, ModelReply
from prompts.loader import PromptBook
from tests.contracts import Bench, Failure, ToolContract, set_up_on
from tools.judge import JudgeConfig, JudgeInput, JudgeKeyframe, JudgeVideo


class Rambles:
    spec_id, frames_shown = "rambles", 0
    criteria, reads_prompts = None, True  # scores what the rubric asks

    def judge(self, request: JudgeRequest) -> ModelReply:
        return ModelReply("It looks lovely, 11 out of 10!")


class TestJudgeKeyframe(ToolContract):
    tool_name = "judge_keyframe"

    def good_input(self, bench: Bench) -> BaseModel:
        return JudgeInput(
            source=bench.ingested.keyframe,
            edited=bench.edited_keyframe,
            instruction="Make the video black and white.",
            target_description="A black and white video.",
            category="global_style",
        )

    def failures(self, bench: Bench) -> list[Failure]:
        broken = set_up_on(JudgeKeyframe(JudgeConfig()), Rambles())
        return [(broken, self.good_input(bench), "llm_schema", "answer")]

    def test_scores_every_criterion_from_0_to_10_with_a_reason(self, bench: Bench) -> None:
        verdict = bench.run("judge_keyframe", self.good_input(bench))
        assert verdict.scores and all(0 <= s <= 10 for s in verdict.scores.values())
        assert set(verdict.reasons) == set(verdict.scores)

    def test_a_local_category_reaches_the_rubric_and_the_metric_judge(self, bench: Bench) -> None:
        tool, ctx = self.make_tool(bench), bench.context()
        as_local = tool(self.good_input(bench).model_copy(update={"category": "local_attribute"}), ctx)
        as_global = tool(self.good_input(bench), ctx)
        assert ctx.rendered == []  # a metric judge reads no rubric: none is rendered, the trace shows none
        rubric = PromptBook().render(
            tool.templates[0], instruction="x", target_description="y", category="c", local=True
        )
        assert "this is a local edit" in rubric.text
        # The black-and-white edit changed the whole frame: fine for a global edit, not for a local one.
        assert as_local.scores["structure_preservation"] < as_global.scores["structure_preservation"]


class TestJudgeVideo(ToolContract):
    tool_name = "judge_video"

    def good_input(self, bench: Bench) -> BaseModel:
        return JudgeInput(
            source=bench.ingested.clip,
            edited=bench.edited_video,
            instruction="Make the video black and white.",
            target_description="A black and white video.",
        )

    def failures(self, bench: Bench) -> list[Failure]:
        good = self.good_input(bench)
        frames, fps = bench.io.read_video(bench.edited_video)
        shorter = bench.io.write_video(frames[:5], fps)
        return [
            (bench.tool("judge_video"), good.model_copy(update={"edited": shorter}), "bad_input", "edited"),
            (set_up_on(JudgeVideo(JudgeConfig()), Rambles()), good, "llm_schema", "answer"),
        ]
