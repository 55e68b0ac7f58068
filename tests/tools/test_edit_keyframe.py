"""edit_keyframe keeps the tool contract; an edit the backend cannot make is unsupported_edit naming the
instruction, and a frame of the wrong shape is tool_failed naming edited_keyframe."""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel

from tests.contracts import Bench, Failure, ToolContract, set_up_on
from tools.edit_keyframe import EditKeyframe, EditKeyframeInput


class HalfSizeEditor:
    spec_id = "half-size"

    def edit(self, image: np.ndarray, instruction: str, seed: int, memory_level: int = 0) -> np.ndarray:
        return image[::2, ::2]


class TestEditKeyframe(ToolContract):
    tool_name = "edit_keyframe"

    def good_input(self, bench: Bench) -> BaseModel:
        return EditKeyframeInput(keyframe=bench.ingested.keyframe, instruction="Make it a pencil sketch.", seed=3)

    def failures(self, bench: Bench) -> list[Failure]:
        good = self.good_input(bench)
        unknown = good.model_copy(update={"instruction": "Replace the rabbit with a giraffe."})
        return [
            (bench.tool("edit_keyframe"), unknown, "unsupported_edit", "instruction"),
            (set_up_on(EditKeyframe(), HalfSizeEditor()), good, "tool_failed", "edited_keyframe"),
        ]

    def test_the_edit_changes_the_frame_and_keeps_its_size(self, bench: Bench) -> None:
        out = bench.run("edit_keyframe", self.good_input(bench))
        source, edited = bench.io.read_image(bench.ingested.keyframe), bench.io.read_image(out.edited_keyframe)
        assert edited.shape == source.shape and not np.array_equal(edited, source)
