"""Fewer frames, never stretched ones. A video step whose backend makes fewer frames than its clip holds (a Wan
model makes 4k+1 frames, at most its num_frames; a lower memory level after an out-of-memory error halves them)
makes its video for a window of the clip's consecutive frames, at the clip's own rate, around the key frame, and
hands on that window of the source and of its depth video, so a sample's source and edited clips hold the same
frames at the same rate. A shorter clip, not one made in chunks: chunks generated apart meet at a seam that no
source frame has, the very temporal fault a training target must not carry, while a shorter clip is a smaller
sample of the same quality (DiffSynth-Studio and our trainer take any 4k+1 run)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from pydantic import BaseModel, Field

from tools.base import ArtifactRef, ToolContext

MIN_FRAMES = 5  # the shortest video a lower memory level asks for: one Wan latent frame past the first


class SourceWindow(BaseModel, frozen=True):
    """The source frames a video was made for, frame for frame: the clip, or a window of it."""

    clip: ArtifactRef  # those frames of the source, as a video at the clip's rate
    depth_video: ArtifactRef | None  # the same frames of the depth video; None without one
    keyframe_index: int  # the key frame's place in them
    start: int = Field(ge=0)  # where they start in the ingested clip
    frames: int = Field(ge=1)
    of: int = Field(ge=1)  # frames of the ingested clip

    def inside(self, outer: SourceWindow) -> SourceWindow:
        """This window of `outer`'s frames, placed in the ingested clip that `outer` is a window of."""
        return self.model_copy(update={"start": outer.start + self.start, "of": outer.of})


def frames_to_make(made: Callable[[int], int], frames: int, memory_level: int) -> int:
    """How many frames a step makes of a clip `frames` long: what its backend makes of it (`made`), and at each
    memory level half of that, as many as the backend makes of the half."""
    count = made(frames)
    if memory_level:
        count = made(max(MIN_FRAMES, count >> memory_level))
    return max(1, min(count, frames))


def window_start(keyframe_index: int, frames: int, count: int) -> int:
    """Where `count` consecutive frames of `frames` start so that they hold the key frame: with it first when it is
    the clip's first (the paper's key frame), else centred on it, inside the clip."""
    return min(max(0, keyframe_index - count // 2), frames - count)


def window_of(
    ctx: ToolContext,
    clip: ArtifactRef,
    frames: np.ndarray,
    fps: float,
    depth_video: ArtifactRef | None,
    keyframe_index: int,
    start: int,
    count: int,
) -> SourceWindow:
    """`count` frames of `clip` (whose decoded frames are `frames`) from `start`: the clip and its depth video as
    they are when that is all of them, else the window of each written as a video of its own."""
    if count < len(frames):
        clip = ctx.io.write_video(frames[start : start + count], fps, kind="source_clip")
        if depth_video is not None:
            depth, depth_fps = ctx.io.read_video(depth_video)
            depth_video = ctx.io.write_video(depth[start : start + count], depth_fps, kind="depth_video")
    return SourceWindow(
        clip=clip,
        depth_video=depth_video,
        keyframe_index=keyframe_index - start,
        start=start,
        frames=count,
        of=len(frames),
    )
