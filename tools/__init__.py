"""One tool per step of the Ditto method. TOOL_CLASSES lists them; build_toolkit wires each to the backend
that config names (never an if-chain on the profile inside a tool)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field, field_validator

from models.pool import ModelPool
from models.registry import build_backend as build_registered_backend
from models.registry import validate_backend
from tools.base import Resources, Tool
from tools.caption_clip import CaptionClip
from tools.edit_keyframe import EditKeyframe
from tools.enhance_temporal import EnhanceTemporal
from tools.estimate_depth import EstimateDepth
from tools.ingest import Ingest, IngestConfig
from tools.judge import JudgeConfig, JudgeKeyframe, JudgeVideo
from tools.plan_instruction import PlanInstruction, PlanInstructionConfig
from tools.propagate import Propagate


class ToolsConfig(BaseModel, extra="forbid"):
    ingest: IngestConfig = Field(default_factory=IngestConfig)
    plan_instruction: PlanInstructionConfig = Field(default_factory=PlanInstructionConfig)
    judge: JudgeConfig = Field(default_factory=JudgeConfig)


BackendSpec = dict[str, Any]  # {kind: ..., devices: ..., <the backend's own options>}


class BackendsConfig(BaseModel, extra="forbid"):
    captioner: BackendSpec
    planner: BackendSpec
    editor: BackendSpec
    depth: BackendSpec | None = None  # None: no depth video (the cpu propagator reads structure from frames)
    propagator: BackendSpec
    enhancer: BackendSpec
    keyframe_judge: BackendSpec
    video_judge: BackendSpec

    @field_validator("*")
    @classmethod
    def known_backend(cls, spec: BackendSpec | None, info: Any) -> BackendSpec | None:
        if spec is not None:
            validate_backend(info.field_name, spec)
        return spec


def _resources(spec: BackendSpec) -> Resources:
    return Resources(devices=int(spec.get("devices", 1)))


def build_toolkit(tools: ToolsConfig, backends: BackendsConfig, allow_download: bool = False) -> dict[str, Tool]:
    """Every tool with its backend loaded once; the models stay resident for the whole run."""
    b, pool = backends, ModelPool()

    def build_backend(step: str, spec: BackendSpec) -> Any:
        return build_registered_backend(step, spec, pool, allow_download)

    toolkit: list[Tool] = [
        Ingest(tools.ingest),
        CaptionClip(build_backend("captioner", b.captioner), _resources(b.captioner)),
        PlanInstruction(build_backend("planner", b.planner), tools.plan_instruction, _resources(b.planner)),
        EditKeyframe(build_backend("editor", b.editor), _resources(b.editor)),
        JudgeKeyframe(build_backend("keyframe_judge", b.keyframe_judge), tools.judge, _resources(b.keyframe_judge)),
        Propagate(build_backend("propagator", b.propagator), _resources(b.propagator)),
        EnhanceTemporal(build_backend("enhancer", b.enhancer), _resources(b.enhancer)),
        JudgeVideo(build_backend("video_judge", b.video_judge), tools.judge, _resources(b.video_judge)),
    ]
    if b.depth is not None:
        toolkit.append(EstimateDepth(build_backend("depth", b.depth), _resources(b.depth)))
    return {tool.name: tool for tool in toolkit}
