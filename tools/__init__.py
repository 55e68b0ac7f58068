"""One tool per step of the Ditto method, each declared in a file of its own (tools/base.py says what a
declaration holds). TOOLS lists them; declare_tools builds the ones a run uses from its config, loading
nothing, and set_up loads their backends where they run (never an if-chain on the profile inside a tool)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, Field, field_validator

from models.pool import ModelPool
from models.registry import OUTPUT_NEUTRAL as OUTPUT_NEUTRAL  # for the agent, which imports nothing from models
from models.registry import backend_class, build_backend, validate_backend
from tools.base import BackendSpec, Resources, Tool
from tools.caption_clip import CaptionClip, CaptionClipConfig
from tools.edit_keyframe import EditKeyframe
from tools.enhance_temporal import EnhanceTemporal
from tools.estimate_depth import EstimateDepth
from tools.ingest import FingerprintClip, Ingest, IngestConfig
from tools.judge import JudgeConfig, JudgeKeyframe, JudgeVideo
from tools.plan_instruction import PlanInstruction, PlanInstructionConfig
from tools.propagate import Propagate
from tools.score_clip import ScoreClip
from tools.train_editto import EditWithEditto, TrainEditto

TOOLS: dict[str, type[Tool]] = {
    tool.name: tool
    for tool in (
        FingerprintClip,  # once per source clip, before its episodes: near-duplicates are skipped
        Ingest,
        CaptionClip,
        PlanInstruction,
        EditKeyframe,
        JudgeKeyframe,
        EstimateDepth,
        Propagate,
        EnhanceTemporal,
        JudgeVideo,
        TrainEditto,  # a training round and its evaluation
        EditWithEditto,
        ScoreClip,
    )
}


class ToolsConfig(BaseModel, extra="forbid"):
    """The `tools:` sections (Tool.config_section): each tool's own settings."""

    ingest: IngestConfig = Field(default_factory=IngestConfig)
    caption_clip: CaptionClipConfig = Field(default_factory=CaptionClipConfig)
    plan_instruction: PlanInstructionConfig = Field(default_factory=PlanInstructionConfig)
    judge: JudgeConfig = Field(default_factory=JudgeConfig)


class BackendsConfig(BaseModel, extra="forbid"):
    """The `backends:` entries (Tool.backend_step): which backend serves each step, and its options."""

    captioner: BackendSpec
    planner: BackendSpec
    editor: BackendSpec
    depth: BackendSpec | None = None  # None: no depth video (the cpu propagator reads structure from frames)
    propagator: BackendSpec
    enhancer: BackendSpec
    keyframe_judge: BackendSpec
    video_judge: BackendSpec
    # Editto, trained by the agent. Checked only when training is asked for (validate_training_backend):
    # its class imports torch, which the cpu profile must not load otherwise.
    editto: BackendSpec | None = None
    clip_scorer: BackendSpec | None = None  # CLIP-T and CLIP-F in the held-out evaluation; None: judge only

    @field_validator("*")
    @classmethod
    def known_backend(cls, spec: BackendSpec | None, info: Any) -> BackendSpec | None:
        if spec is not None and info.field_name != "editto":
            validate_backend(info.field_name, spec)
        return spec


def validate_training_backend(backends: BackendsConfig) -> None:
    """Raises ValueError when training is asked for without a usable backends.editto."""
    if backends.editto is None:
        raise ValueError("training Editto needs backends.editto (the profiles define one: docs/profiles.md)")
    try:
        validate_backend("editto", backends.editto)
    except ImportError as err:
        raise ValueError(f"training Editto needs the models extra (pip install -e '.[models]'): {err}") from err


CATEGORY_STEPS = ("editor", "propagator")  # the steps whose backends say which edit categories they can make


def backend_abilities(backends: BackendsConfig) -> dict[str, frozenset[str] | None]:
    """'step (kind)' -> the edit categories its configured backend declares (None: any instruction)."""
    specs = {"editor": backends.editor, "propagator": backends.propagator}
    return {
        f"{step} ({specs[step]['kind']})": getattr(backend_class(step, specs[step]["kind"]), "categories", None)
        for step in CATEGORY_STEPS
    }


def tools_used_in(*uses: str) -> list[str]:
    """The tools that episodes, training rounds (or both) call, in TOOLS' order."""
    return [name for name, tool in TOOLS.items() if set(tool.used_in) & set(uses)]


def declare_tools(tools: ToolsConfig, backends: BackendsConfig, names: Iterable[str]) -> dict[str, Tool]:
    """The named tools as configured, in TOOLS' order, their backends not loaded: enough to key, record and
    charge their calls, and to size their Ray pools. An optional tool without a backend is left out."""
    wanted, declared = set(names), {}
    for name, cls in TOOLS.items():
        if name not in wanted:
            continue
        if cls.backend_step and getattr(backends, cls.backend_step) is None:
            if cls.optional:
                continue
            raise ValueError(f"{name} needs backends.{cls.backend_step} (the profiles define one: docs/profiles.md)")
        declared[name] = cls.declare(tools, backends)
    return declared


def set_up(toolkit: dict[str, Tool], backends: BackendsConfig, allow_download: bool = False) -> dict[str, Tool]:
    """Loads the tools' backends here and hands each tool its own; they stay resident. One backend per step
    (train_editto and edit_with_editto run on one Editto), and one copy of the weights per resident model
    (the captioner, planner and judges on one Qwen2.5-VL, through the ModelPool)."""
    pool, loaded = ModelPool(), {}
    for tool in toolkit.values():
        if (step := tool.backend_step) is not None:
            if step not in loaded:
                loaded[step] = build_backend(step, getattr(backends, step), pool, allow_download)
            tool.setup(loaded[step])
    return toolkit


def build_toolkit(
    tools: ToolsConfig, backends: BackendsConfig, allow_download: bool = False, wanted: Iterable[str] | None = None
) -> dict[str, Tool]:
    """The wanted tools (by default an episode's), declared and set up in this process."""
    names = tools_used_in("episode") if wanted is None else wanted
    return set_up(declare_tools(tools, backends, names), backends, allow_download)


def by_model(toolkit: dict[str, Tool]) -> dict[str, list[Tool]]:
    """The tools grouped by the model they run on (Tool.model_key), each group named after its first tool; a
    tool without a backend is a group of its own. On Ray a group is one actor pool, whose actors hold one copy
    of the model for all of its tools, as set_up does in one process."""
    groups: dict[Any, list[Tool]] = {}
    for tool in toolkit.values():
        groups.setdefault(tool.model_key or tool.name, []).append(tool)
    return {tools[0].name: tools for tools in groups.values()}


def pool_resources(tools: list[Tool]) -> Resources:
    """The resources of a Ray actor pool that runs `tools` on one resident model: the most actors and GPUs per
    actor any of them asks for, and CPUs per actor where a spec names them (else the Ray pools' default for the
    kind of tool, agent/ray_pools.pool_ask)."""
    each = [tool.resources for tool in tools]
    gpus = [r.gpus if r.gpus is not None else r.devices for r in each]
    update: dict[str, Any] = {"actors": max(r.actors for r in each), "gpus": max(gpus)}
    if given := [r.cpus for r in each if "cpus" in r.model_fields_set]:
        update["cpus"] = max(given)
    return each[0].model_copy(update=update) if len(each) > 1 else each[0]
