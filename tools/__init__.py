"""One tool per step of the Ditto method. TOOL_CLASSES lists them; build_toolkit wires each to the backend
that config names (never an if-chain on the profile inside a tool)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from pydantic import BaseModel, Field, field_validator

from models.pool import ModelPool
from models.registry import OUTPUT_NEUTRAL as OUTPUT_NEUTRAL  # for the agent, which imports nothing from models
from models.registry import (
    RESOURCE_KEYS,
    backend_class,
    backend_settings,
    resident_model,
    resource_defaults,
    validate_backend,
)
from models.registry import build_backend as build_registered_backend
from tools.base import Resources, Tool
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


class ToolsConfig(BaseModel, extra="forbid"):
    ingest: IngestConfig = Field(default_factory=IngestConfig)
    caption_clip: CaptionClipConfig = Field(default_factory=CaptionClipConfig)
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
        raise ValueError("training Editto needs backends.editto (the profiles define one; see README)")
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


def _resources(spec: BackendSpec, **defaults: Any) -> Resources:
    kind_defaults = resource_defaults(spec.get("kind"))
    return Resources(**{**defaults, **kind_defaults, **{k: spec[k] for k in RESOURCE_KEYS if k in spec}})


# The backend spec each model-backed tool reads its resources from (ingest has none: Ingest.resources).
TOOL_BACKENDS = {
    "caption_clip": "captioner",
    "plan_instruction": "planner",
    "edit_keyframe": "editor",
    "judge_keyframe": "keyframe_judge",
    "estimate_depth": "depth",
    "propagate": "propagator",
    "enhance_temporal": "enhancer",
    "judge_video": "video_judge",
    "train_editto": "editto",
    "edit_with_editto": "editto",
    "score_clip": "clip_scorer",
}


# The section of ToolsConfig each tool reads, whole: every field of it is part of the tool's settings.
TOOL_CONFIGS = {
    "ingest": "ingest",
    "fingerprint_clip": "ingest",
    "caption_clip": "caption_clip",
    "plan_instruction": "plan_instruction",
    "judge_keyframe": "judge",
    "judge_video": "judge",
}


def editor_effects(backends: BackendsConfig) -> Callable[[str], str | None] | None:
    """How the configured editor reads the edit an instruction makes (its class's `effect`, read without loading
    a model), so that the planner never gives a clip the same edit twice in other words; None where it does not
    say (a diffusion editor takes any instruction)."""
    return getattr(backend_class("editor", backends.editor["kind"]), "effect", None)


def tool_settings(name: str, tools: ToolsConfig, backends: BackendsConfig) -> dict[str, Any]:
    """Everything configured that can change what tool `name` returns: its own config section and its
    backend's settings (models.registry.backend_settings). Part of every call's cache key."""
    settings: dict[str, Any] = {}
    if name in TOOL_CONFIGS:
        settings["config"] = getattr(tools, TOOL_CONFIGS[name]).model_dump(mode="json")
    if name in TOOL_BACKENDS and (spec := getattr(backends, TOOL_BACKENDS[name])) is not None:
        settings["backend"] = backend_settings(TOOL_BACKENDS[name], spec)
    if name == "plan_instruction":  # the editor's reading of instructions decides what counts as a repeat
        settings["effects"] = getattr(backend_class("editor", backends.editor["kind"]), "spec_id", None)
    return settings


def tool_resources(name: str, backends: BackendsConfig) -> Resources:
    """A tool's resources from config alone, without loading its backend (to size its actor pool)."""
    if name not in TOOL_BACKENDS:
        return Ingest.resources
    spec = getattr(backends, TOOL_BACKENDS[name]) or {}
    if name != "train_editto":
        return _resources(spec)
    # A training round may rightly take hours: no time limit unless the spec sets one. Data-parallel, it holds
    # its workers' devices for the whole call (charged workers x devices x seconds); the process that starts
    # it keeps the share it asks for (the held-out evaluation runs there).
    one = _resources(spec, timeout_s=None)
    workers = spec.get("workers", 1)
    return one.model_copy(
        update={"devices": one.devices * workers, "gpus": one.gpus if one.gpus is not None else one.devices}
    )


def shared_model_pools(backends: BackendsConfig, tools: Iterable[str]) -> dict[str, str]:
    """Tool -> the tool whose Ray actor pool it runs in, for tools whose backends hold one resident model (the
    captioner, planner and judges naming the same Qwen2.5-VL): each actor of that pool holds one copy of the
    weights for all of them, as build_toolkit's ModelPool does in one process."""
    first: dict[tuple[str, ...], str] = {}
    shared = {}
    for name in tools:
        spec = getattr(backends, TOOL_BACKENDS[name]) if name in TOOL_BACKENDS else None
        if spec and (key := resident_model(TOOL_BACKENDS[name], spec)):
            shared[name] = first.setdefault(key, name)
    return shared


def pool_resources(tools: list[str], backends: BackendsConfig) -> Resources:
    """The resources of an actor pool that runs `tools` on one resident model: the largest number of actors and
    GPUs per actor any of their specs asks for, and CPUs per actor where a spec names them (else the Ray pools'
    default for the kind of tool, agent/ray_pools.pool_ask)."""
    each = [tool_resources(name, backends) for name in tools]
    gpus = [r.gpus if r.gpus is not None else r.devices for r in each]
    update: dict[str, Any] = {"actors": max(r.actors for r in each), "gpus": max(gpus)}
    if given := [r.cpus for r in each if "cpus" in r.model_fields_set]:
        update["cpus"] = max(given)
    return each[0].model_copy(update=update) if len(each) > 1 else each[0]


EPISODE_TOOLS = (
    "fingerprint_clip",  # once per source clip, before the episodes: near-duplicates are skipped
    "ingest",
    "caption_clip",
    "plan_instruction",
    "edit_keyframe",
    "judge_keyframe",
    "estimate_depth",
    "propagate",
    "enhance_temporal",
    "judge_video",
)
# A training round and its evaluation; score_clip only where a CLIP backend is configured.
TRAINING_TOOLS = ("train_editto", "edit_with_editto", "judge_video", "score_clip")


def build_toolkit(
    tools: ToolsConfig, backends: BackendsConfig, allow_download: bool = False, wanted: Iterable[str] = EPISODE_TOOLS
) -> dict[str, Tool]:
    """The wanted tools, each with its backend loaded once; the models stay resident for the whole run.
    estimate_depth is left out when no depth backend is configured."""
    b, pool, wanted = backends, ModelPool(), set(wanted)

    def backend(name: str) -> Any:
        step = TOOL_BACKENDS[name]
        return build_registered_backend(step, getattr(b, step), pool, allow_download)

    def resources(name: str) -> Resources:
        return tool_resources(name, b)

    def editto() -> Any:
        validate_training_backend(b)
        return pool.get(("editto",), lambda: backend("train_editto"))  # one model for both Editto tools

    builders: dict[str, Callable[[], Tool]] = {
        "ingest": lambda: Ingest(tools.ingest),
        "fingerprint_clip": lambda: FingerprintClip(tools.ingest),
        "caption_clip": lambda: CaptionClip(backend("caption_clip"), tools.caption_clip, resources("caption_clip")),
        "plan_instruction": lambda: PlanInstruction(
            backend("plan_instruction"), tools.plan_instruction, resources("plan_instruction"), editor_effects(b)
        ),
        "edit_keyframe": lambda: EditKeyframe(backend("edit_keyframe"), resources("edit_keyframe")),
        "judge_keyframe": lambda: JudgeKeyframe(backend("judge_keyframe"), tools.judge, resources("judge_keyframe")),
        "estimate_depth": lambda: EstimateDepth(backend("estimate_depth"), resources("estimate_depth")),
        "propagate": lambda: Propagate(backend("propagate"), resources("propagate")),
        "enhance_temporal": lambda: EnhanceTemporal(backend("enhance_temporal"), resources("enhance_temporal")),
        "judge_video": lambda: JudgeVideo(backend("judge_video"), tools.judge, resources("judge_video")),
        "train_editto": lambda: TrainEditto(editto(), resources("train_editto")),
        "edit_with_editto": lambda: EditWithEditto(editto(), resources("edit_with_editto")),
        "score_clip": lambda: ScoreClip(backend("score_clip"), resources("score_clip")),
    }
    # The optional steps (depth, CLIP scores) are left out where no backend is configured for them.
    optional = {name for name in ("estimate_depth", "score_clip") if getattr(b, TOOL_BACKENDS[name]) is None}
    return {name: build() for name, build in builders.items() if name in wanted - optional}
