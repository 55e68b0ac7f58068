"""Ditto step 1: a source clip, decoded at a fixed frame rate and size, with the measures the pre-filter
needs (length, motion, scene cuts). The tool measures; policy decides what is too short or too static."""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, Field

from models.cpu.flow import clip_flows, cut_scores, first_shot_window, max_cut_score, mean_motion
from models.cpu.source_measures import contrast, dhash, flash_rate, neighbour_correlation
from tools.base import ArtifactRef, Resources, Tool, ToolContext, ToolError


class IngestConfig(BaseModel, extra="forbid"):
    num_frames: int = Field(33, ge=1, le=10_000)  # cpu default; the paper's clips are 101 frames, Wan wants 4k+1
    fps: float = Field(12.0, gt=0, le=240)  # cpu default; the paper resamples to 20 fps
    max_side: int = Field(320, ge=8, le=16_384)  # cpu default keeps a CPU episode to seconds; full uses 832 (480p Wan)
    max_source_pixels: int = Field(7680 * 4320, ge=64)  # 8K; larger frames are rejected before decoding them
    keyframe: Literal["first", "middle"] = "first"  # the paper edits the first frame
    # A clip whose first seconds hold a shot cut still has a usable shot after it: ingest starts its window at
    # the first stretch of num_frames frames without a step above shot_cut (the same histogram distance as
    # policy.max_cut_score), up to max_start_s into the clip; the pre-filter still refuses a window with a cut.
    max_start_s: float = Field(5.0, ge=0)
    shot_cut: float = Field(0.4, ge=0, le=1)
    # Frames hashed per second (a trim shifts the footage by at most 1/8 s of it); ten seconds of footage decide
    # whether two clips are the same.
    fingerprint_fps: float = Field(4.0, gt=0, le=240)
    fingerprint_frames: int = Field(40, ge=1, le=10_000)


class IngestInput(BaseModel, frozen=True, extra="forbid"):
    clip_path: str
    clip_size: int  # with the mtime, part of the cache key: a changed file is ingested again
    clip_mtime_ns: int
    source_root: str | None = None  # the clip must resolve inside it (a symlink may not lead elsewhere)


def ingest_input(clip_path: str | Path, source_root: Path | None = None) -> IngestInput:
    """A clip's ingest input as it is on disk now (a file that cannot be read has size -1: ingest refuses it)."""
    try:
        st = os.stat(clip_path)
        size, mtime = st.st_size, st.st_mtime_ns
    except OSError:
        size, mtime = -1, -1
    return IngestInput(
        clip_path=str(clip_path),
        clip_size=size,
        clip_mtime_ns=mtime,
        source_root=str(source_root) if source_root else None,
    )


def why_unreadable(path: str) -> str:
    try:
        os.stat(path)
    except OSError as err:
        known = {errno.ELOOP: "is a symlink loop", errno.ENOENT: "does not exist"}.get(err.errno or 0)
        return known or f"cannot be read ({err.strerror})"
    return "could not be read when the run listed it"


class IngestOutput(BaseModel, frozen=True):
    clip: ArtifactRef
    keyframe: ArtifactRef
    keyframe_index: int
    num_frames: int
    fps: float
    width: int
    height: int
    source_fps: float
    source_width: int
    source_height: int
    source_duration_s: float
    start_s: float = 0.0  # where in the source the window starts (after a shot cut near the start)
    motion: float  # mean flow magnitude per frame, fraction of the frame diagonal
    cut_score: float  # largest histogram distance between consecutive frames, 0..1
    contrast: float  # median luma standard deviation, 0..255: near 0 on a blank screen
    neighbour_correlation: float  # how smooth the image is, -1..1: near 0 for random noise
    flash_rate: float  # fraction of frame steps with a jump in brightness: a flashing screen


class Ingest(Tool):
    name, version = "ingest", "3"  # 3: the window starts after a shot cut near the start
    Input, Output = IngestInput, IngestOutput
    config_section = "ingest"
    backend_id = "pyav+opencv-flow"
    default_resources = Resources(devices=1, clock="process_cpu", gpus=0)  # decoding and flow run on a CPU core
    config: IngestConfig

    def __call__(self, inp: IngestInput, ctx: ToolContext) -> IngestOutput:
        cfg = self.config
        if inp.clip_size < 0:
            raise ToolError("bad_input", f"{inp.clip_path} {why_unreadable(inp.clip_path)}", field="clip_path")
        if inp.source_root is not None:
            real, root = Path(inp.clip_path).resolve(), Path(inp.source_root).resolve()
            if not real.is_relative_to(root):
                raise ToolError(
                    "bad_input", f"{inp.clip_path} leads to {real}, outside --source-dir {root}", field="clip_path"
                )
        search = cfg.num_frames + round(cfg.max_start_s * cfg.fps)
        try:
            clip = ctx.io.decode_source(Path(inp.clip_path), cfg.fps, search, cfg.max_side, cfg.max_source_pixels)
        except (ValueError, OSError) as err:
            raise ToolError("bad_input", str(err), field="clip_path") from err
        start = first_shot_window(cut_scores(clip.frames), cfg.num_frames, cfg.shot_cut)
        frames = clip.frames[start : start + cfg.num_frames]
        keyframe_index = 0 if cfg.keyframe == "first" else len(frames) // 2
        diag = float(np.hypot(*frames.shape[1:3]))
        return IngestOutput(
            clip=ctx.io.write_video(frames, cfg.fps, kind="source_clip"),
            keyframe=ctx.io.write_image(frames[keyframe_index], kind="keyframe"),
            keyframe_index=keyframe_index,
            num_frames=len(frames),
            fps=cfg.fps,
            width=frames.shape[2],
            height=frames.shape[1],
            source_fps=clip.source_fps,
            source_width=clip.source_size[0],
            source_height=clip.source_size[1],
            source_duration_s=clip.source_duration_s,
            start_s=round(start / cfg.fps, 3),
            motion=mean_motion(clip_flows(frames), diag),
            cut_score=max_cut_score(frames),
            contrast=contrast(frames),
            neighbour_correlation=neighbour_correlation(frames),
            flash_rate=flash_rate(frames),
        )


class FingerprintClipInput(BaseModel, frozen=True, extra="forbid"):
    clip_path: str
    clip_size: int  # with the mtime, part of the cache key
    clip_mtime_ns: int


class FingerprintClipOutput(BaseModel, frozen=True):
    frame_hashes: list[str]  # 64-bit difference hash of each sampled frame with some structure, hex


class FingerprintClip(Tool):
    """Before any episode: a perceptual fingerprint of a source clip, so the agent can skip clips that show
    footage an earlier clip already showed (re-encoded, slightly cropped or trimmed)."""

    name, version = "fingerprint_clip", "1"
    Input, Output = FingerprintClipInput, FingerprintClipOutput
    config_section = "ingest"  # its fingerprint_* settings
    backend_id = "pyav+dhash"
    default_resources = Resources(devices=1, clock="process_cpu", gpus=0)  # decoding on a CPU core, as ingest
    config: IngestConfig

    def __call__(self, inp: FingerprintClipInput, ctx: ToolContext) -> FingerprintClipOutput:
        cfg = self.config
        try:
            clip = ctx.io.decode_source(
                Path(inp.clip_path), cfg.fingerprint_fps, cfg.fingerprint_frames, 64, cfg.max_source_pixels
            )
        except (ValueError, OSError) as err:
            raise ToolError("bad_input", str(err), field="clip_path") from err
        hashes = (dhash(f) for f in clip.frames)
        return FingerprintClipOutput(frame_hashes=[f"{h:016x}" for h in hashes if h is not None])
