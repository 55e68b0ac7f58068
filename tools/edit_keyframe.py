"""Ditto step 3: edit one key frame of the source clip by the instruction."""

from __future__ import annotations

from pydantic import BaseModel

from models.protocols import ImageEditor
from tools.base import ArtifactRef, Tool, ToolContext, ToolError


class EditKeyframeInput(BaseModel, frozen=True, extra="forbid"):
    keyframe: ArtifactRef
    instruction: str
    seed: int
    memory_level: int = 0  # raised after an out-of-memory error: the editor works at a smaller size


class EditKeyframeOutput(BaseModel, frozen=True):
    edited_keyframe: ArtifactRef


class EditKeyframe(Tool):
    name, version = "edit_keyframe", "1"
    Input, Output = EditKeyframeInput, EditKeyframeOutput
    backend_step = "editor"

    def setup(self, editor: ImageEditor) -> None:
        self.editor = editor

    def __call__(self, inp: EditKeyframeInput, ctx: ToolContext) -> EditKeyframeOutput:
        image = ctx.io.read_image(inp.keyframe)
        try:
            edited = self.editor.edit(image, inp.instruction, seed=inp.seed, memory_level=inp.memory_level)
        except ValueError as err:  # the editor's way of saying it cannot make this edit
            raise ToolError("unsupported_edit", str(err), field="instruction") from err
        if edited.shape != image.shape:
            raise ToolError(
                "tool_failed", f"the editor returned {edited.shape} for a {image.shape} frame", field="edited_keyframe"
            )
        return EditKeyframeOutput(edited_keyframe=ctx.io.write_image(edited, kind="edited_keyframe"))
