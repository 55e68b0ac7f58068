"""score_clip keeps the tool contract on the tiny random CLIP (the cpu profile configures no CLIP scorer);
an empty target description is bad input naming text."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from tests.contracts import Bench, Failure, ToolContract
from tools import build_toolkit
from tools.base import Tool
from tools.score_clip import ScoreClipInput

pytest.importorskip("torch")
pytestmark = pytest.mark.tiny

TINY_CLIP = {"kind": "clip", "path": "tiny:clip", "device": "cpu", "dtype": "float32"}


class TestScoreClip(ToolContract):
    tool_name = "score_clip"

    def make_tool(self, bench: Bench) -> Tool:
        backends = bench.cfg.backends.model_copy(update={"clip_scorer": TINY_CLIP})
        return build_toolkit(bench.cfg.tools, backends, wanted=[self.tool_name])[self.tool_name]

    def good_input(self, bench: Bench) -> BaseModel:
        return ScoreClipInput(video=bench.edited_video, text="A black and white video.")

    def failures(self, bench: Bench) -> list[Failure]:
        blank = ScoreClipInput(video=bench.edited_video, text="  ")
        return [(self.make_tool(bench), blank, "bad_input", "text")]

    def test_scores_are_clip_t_and_clip_f(self, bench: Bench) -> None:
        out = self.make_tool(bench)(self.good_input(bench), bench.context())
        assert set(out.scores) == {"CLIP-T", "CLIP-F"} and all(-100 <= s <= 100 for s in out.scores.values())
