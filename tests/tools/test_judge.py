"""judge_keyframe and judge_video keep the tool contract; an answer that never parses is llm_schema naming
the answer, and an edited video that does not match its source is bad input naming it."""

from __future__ import annotations

from pydantic import BaseModel

from models.protocols import JudgeRequest
from tests.contracts import Bench, Failure, ToolContract
from tools.base import Resources
from tools.judge import JudgeConfig, JudgeInput, JudgeKeyframe, JudgeVideo


class Rambles:
    spec_id = "rambles"
    criteria = None  # scores what the rubric asks

    def judge(self, request: JudgeRequest) -> str:
        return "It looks lovely, 11 out of 10!"


class TestJudgeKeyframe(ToolContract):
    tool_name = "judge_keyframe"

    def good_input(self, bench: Bench) -> BaseModel:
        return JudgeInput(
            source=bench.ingested.keyframe,
            edited=bench.edited_keyframe,
            instruction="Make the video black and white.",
            target_description="A black and white video.",
        )

    def failures(self, bench: Bench) -> list[Failure]:
        broken = JudgeKeyframe(Rambles(), JudgeConfig(), Resources())
        return [(broken, self.good_input(bench), "llm_schema", "answer")]

    def test_scores_every_criterion_from_0_to_10_with_a_reason(self, bench: Bench) -> None:
        verdict = bench.run("judge_keyframe", self.good_input(bench))
        assert verdict.scores and all(0 <= s <= 10 for s in verdict.scores.values())
        assert set(verdict.reasons) == set(verdict.scores)


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
            (JudgeVideo(Rambles(), JudgeConfig(), Resources()), good, "llm_schema", "answer"),
        ]
