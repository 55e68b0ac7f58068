"""Ditto step 5: the edited video, generated from the edited key frame (reference), the depth video
(structure) and the target description (prompt). A backend that makes fewer frames than the clip holds makes
them for a window of it, never stretched back (tools/frame_window.py)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from models.protocols import LatentPropagator, VideoPropagator
from tools.base import ArtifactRef, Tool, ToolContext, ToolError
from tools.frame_window import SourceWindow, frames_to_make, window_of, window_start
from tools.video_latents import HandedLatents, hand_on


class PropagateInput(BaseModel, frozen=True, extra="forbid"):
    clip: ArtifactRef
    edited_keyframe: ArtifactRef
    keyframe_index: int
    depth: ArtifactRef | None
    prompt: str
    seed: int
    # Raised after an out-of-memory error: half the frames per level (a shorter clip), a tiled VAE.
    memory_level: int = 0
    # Weight of the control video (the depth) in the generation: the edit category's, lowered on a retry after
    # the video judge named a shape criterion. None: no control video.
    control_strength: float | None = Field(None, ge=0, le=1)
    category: str = ""  # the edit's category: what kind of edit is carried (a subtitle stays on screen)
    depth_video: ArtifactRef | None = None  # the depth as a video: cut with the source when fewer frames are made


class PropagateOutput(BaseModel, frozen=True):
    edited_video: ArtifactRef
    made_for: SourceWindow  # the source frames the video was made for, frame for frame
    # The latents the video was decoded from, for the enhancer (tools/video_latents.py); None from a backend
    # that has none, and in the outputs of calls made before they were handed on (the video is the same).
    latents: HandedLatents | None = None


class Propagate(Tool):
    name, version = "propagate", "3"  # 3: fewer frames are made for a window of the clip, never stretched
    Input, Output = PropagateInput, PropagateOutput
    backend_step = "propagator"

    def setup(self, propagator: VideoPropagator) -> None:
        self.propagator = propagator

    def __call__(self, inp: PropagateInput, ctx: ToolContext) -> PropagateOutput:
        source, fps = ctx.io.read_video(inp.clip)
        if not 0 <= inp.keyframe_index < len(source):
            raise ToolError(
                "bad_input", f"key frame {inp.keyframe_index} is outside {len(source)} frames", field="keyframe_index"
            )
        count = frames_to_make(self.propagator.frames_made, len(source), inp.memory_level)
        start = window_start(inp.keyframe_index, len(source), count)
        window = source[start : start + count]
        depth = ctx.io.read_array(inp.depth).astype("float32")[start : start + count] if inp.depth else None
        args = (window, ctx.io.read_image(inp.edited_keyframe), inp.keyframe_index - start, depth, inp.prompt, inp.seed)
        options = {"memory_level": inp.memory_level, "control_strength": inp.control_strength, "category": inp.category}
        if isinstance(self.propagator, LatentPropagator):
            video, latents = self.propagator.propagate_latents(*args, **options)
        else:
            video, latents = self.propagator.propagate(*args, **options), None
        if video.shape != window.shape:
            raise ToolError(
                "tool_failed", f"the propagator returned {video.shape}, expected {window.shape}", field="edited_video"
            )
        made_for = window_of(ctx, inp.clip, source, fps, inp.depth_video, inp.keyframe_index, start, count)
        edited = ctx.io.write_video(video, fps, kind="edited_video")
        handed = hand_on(ctx, latents, edited) if latents is not None else None
        return PropagateOutput(edited_video=edited, made_for=made_for, latents=handed)
