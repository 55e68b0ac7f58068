"""A generated video's VAE latents, handed from propagation to the temporal enhancer. The enhancer would otherwise
VAE-encode the propagation's decoded video again: a full encode (5.7 s at 1280x720x101 on an H200, as
bench/stages.py models it) that returns latents the propagation had before its decode, less what the decode,
8-bit frames and the video file lost. The latents are an artifact of their own (content-addressed, so the
enhancer's call keys on them) with what they are of: the video they were decoded into, its working size and
the VAE's latent space, which the enhancer compares with its own before it starts from them."""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import BaseModel

from models.protocols import VideoLatents
from tools.base import ArtifactRef, ToolContext


class HandedLatents(BaseModel, frozen=True):
    latents: ArtifactRef  # float16 [C, T', H', W'], normalised as `space` says
    video: ArtifactRef  # the video they were decoded into (the propagation's edited_video)
    space: dict[str, Any]  # the VAE's z_dim, latents_mean, latents_std, scale factors
    height: int  # the video's working size and frames, before it was resized to the source's
    width: int
    frames: int


def hand_on(ctx: ToolContext, latents: VideoLatents, video: ArtifactRef) -> HandedLatents:
    ref = ctx.io.write_array(np.ascontiguousarray(latents.latents), kind="latents")
    return HandedLatents(
        latents=ref,
        video=video,
        space=latents.space,
        height=latents.height,
        width=latents.width,
        frames=latents.frames,
    )


def taken(ctx: ToolContext, handed: HandedLatents) -> VideoLatents:
    return VideoLatents(
        latents=ctx.io.read_array(handed.latents),
        space=handed.space,
        height=handed.height,
        width=handed.width,
        frames=handed.frames,
    )
