"""What every tool shares: the Tool declaration, artifact refs, the context the agent hands in, resources, and
ToolError."""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, Protocol

import numpy as np
from pydantic import BaseModel, Field

from models.protocols import OutOfDeviceMemory
from models.registry import (
    RESOURCE_KEYS,
    backend_id,
    backend_settings,
    reads_prompts,
    resident_model,
    resource_defaults,
)
from prompts.loader import PromptBook, RenderedPrompt

ArtifactRef = str  # '<sha256><suffix>' of a file in the artifact store

ErrorKind = Literal[
    "bad_input",  # the input itself is unusable; deterministic, so a rerun would fail the same way
    "unsupported_edit",  # the backend cannot do what the instruction asks
    "category_unfit",  # no edit of the asked category fits this clip; the agent asks for another category
    "llm_schema",  # a model answered, but not in the schema
    "backend_unavailable",  # an endpoint or weights could not be reached
    "oom",  # the device ran out of memory
    "timeout",  # the call ran past its time limit
    "tool_failed",  # anything else the tool raised
]


class ToolError(Exception):
    def __init__(self, kind: ErrorKind, detail: str, field: str | None = None) -> None:
        super().__init__(f"{kind}: {field + ': ' if field else ''}{detail}")
        self.kind, self.detail, self.field = kind, detail, field

    def __reduce__(self) -> tuple[type, tuple[str, str, str | None]]:
        # Rebuilt from its fields, not from the message, when it comes back from a Ray actor.
        return ToolError, (self.kind, self.detail, self.field)


def as_tool_error(tool: str, err: Exception) -> ToolError:
    """What a tool's failure is, by its type: out of memory (device or host), or any other fault."""
    if isinstance(err, ToolError):
        return err
    if isinstance(err, OutOfDeviceMemory | MemoryError):
        return ToolError("oom", f"{tool} ran out of memory: {type(err).__name__}: {err}")
    return ToolError("tool_failed", f"{tool} raised {type(err).__name__}: {err}")


class Resources(BaseModel, frozen=True):
    # Devices held while the tool runs (fractions: a share of a GPU); cost = seconds held x devices.
    # 0 for a remote endpoint: it holds no device of ours, so its calls cost nothing.
    devices: float = Field(default=1, ge=0)
    # A self-hosted LLM endpoint's GPUs are ours although its calls hold none here: set, a call is charged this
    # many device-seconds per 1,000 tokens it reported (prompt and completion) instead. None: off.
    device_seconds_per_1k_tokens: float | None = Field(default=None, ge=0)
    # How the seconds held are measured: 'wall' after taking the device (a GPU model), or 'process_cpu': a
    # CPU algorithm holds this process's CPU and is charged the CPU seconds used meanwhile (agent/executors).
    clock: Literal["wall", "process_cpu"] = "wall"
    timeout_s: float | None = 3600.0  # past this a call is recorded as a timeout and abandoned; None: no limit
    # With --executor ray: the tool's actor pool. GPUs and CPUs are per actor; fractions share a device.
    actors: int = Field(default=1, ge=1)
    gpus: float | None = Field(default=None, ge=0)  # None: as many as `devices`
    cpus: float = Field(default=1, ge=0)


class SourceClip(Protocol):
    frames: np.ndarray  # uint8 [T,H,W,3]
    fps: float
    source_fps: float
    source_size: tuple[int, int]
    source_duration_s: float


class ArtifactIO(Protocol):
    def decode_source(
        self, source: Path, fps: float, num_frames: int, max_side: int, max_source_pixels: int
    ) -> SourceClip:
        """Raises ValueError naming the file when it is not a usable video."""
        ...

    def path(self, ref: ArtifactRef) -> Path: ...
    def write_video(self, frames: np.ndarray, fps: float, kind: str = "video") -> ArtifactRef: ...
    def read_video(self, ref: ArtifactRef) -> tuple[np.ndarray, float]: ...
    def write_image(self, rgb: np.ndarray, kind: str = "image") -> ArtifactRef: ...
    def read_image(self, ref: ArtifactRef) -> np.ndarray: ...
    def write_array(self, array: np.ndarray, kind: str = "array") -> ArtifactRef: ...
    def read_array(self, ref: ArtifactRef) -> np.ndarray: ...
    def scratch_dir(self) -> AbstractContextManager[Path]: ...
    def adopt_file(self, path: Path, kind: str) -> ArtifactRef: ...


@dataclass
class ToolContext:
    io: ArtifactIO
    prompts: PromptBook
    rendered: list[RenderedPrompt] = field(default_factory=list)
    # What a model call reported (latency, tokens, transport retries, response format; what an enhancer started
    # from), kept in the trace.
    usage: dict[str, Any] = field(default_factory=dict)

    def render(self, name: str, **variables: str | int | float | list[str]) -> str:
        """Render a template and remember it, so the call's trace shows the exact text and its hash."""
        prompt = self.prompts.render(name, **variables)
        self.rendered.append(prompt)
        return prompt.text

    def load_data(self, name: str) -> Any:
        """Load a YAML vocabulary and remember its source, like a rendered template."""
        data, src = self.prompts.load_data(name)
        self.rendered.append(RenderedPrompt(name=name, sha256=src.sha256, origin=src.origin, text=src.text))
        return data


BackendSpec = dict[str, Any]  # {kind: ..., devices: ..., <the backend's own options>}


def spec_resources(spec: BackendSpec, defaults: Resources) -> Resources:
    """What a call holds: the tool's defaults, under its backend kind's (models.registry.resource_defaults),
    under what the spec says."""
    given = {k: spec[k] for k in RESOURCE_KEYS if k in spec}
    return Resources(**defaults.model_dump(exclude_unset=True) | resource_defaults(spec.get("kind")) | given)


class Tool:
    """One step of the method, declared in its own file: what the class says (name, version, input and output,
    templates, the `backends:` entry that serves it, the `tools:` section it reads) and what the constructor
    reads from config (its backend's id, settings and resources, and the model it runs on) are everything a
    call's cache key, its record and charge, and its Ray actor pool need; nothing is loaded. setup() hands the
    tool its backend where it runs, in this process or in a Ray actor (as NeMo Curator's stages do); __call__
    reads as the step."""

    name: ClassVar[str]
    version: ClassVar[str]  # bump it and no call of the old version is reused
    Input: ClassVar[type[BaseModel]]
    Output: ClassVar[type[BaseModel]]
    templates: ClassVar[tuple[str, ...]] = ()  # the prompts it renders for a backend that reads them
    data: ClassVar[tuple[str, ...]] = ()  # vocabularies it reads itself, whatever its backend
    backend_step: ClassVar[str | None] = None  # the `backends:` entry that serves it; None: it runs no model
    config_section: ClassVar[str | None] = None  # the `tools:` section it reads, whole
    optional: ClassVar[bool] = False  # left out of a run whose config names no backend for it
    used_in: ClassVar[tuple[str, ...]] = ("episode",)  # what calls it: episodes, training rounds
    default_resources: ClassVar[Resources] = Resources()  # what a call holds where the backend spec is silent
    backend_id: str  # a tool without a backend names its algorithm (and its version) here

    def __init__(self, config: Any = None, spec: BackendSpec | None = None) -> None:
        """`config`: the tool's `tools:` section; `spec`: its `backends:` entry."""
        self.config = config
        # Everything configured that can change what the tool returns: part of every call's cache key.
        self.settings: dict[str, Any] = {} if config is None else {"config": config.model_dump(mode="json")}
        self.resources = self.default_resources
        # The resident model its backend holds: tools with the same one share it (one Ray actor pool).
        self.model_key: tuple[str, ...] | None = None
        self.reads_prompts = False  # whether its backend reads the prompts it renders
        if spec is not None and self.backend_step is not None:
            self.backend_id = backend_id(self.backend_step, spec)
            self.settings["backend"] = backend_settings(self.backend_step, spec)
            self.resources = spec_resources(spec, self.default_resources)
            self.model_key = resident_model(self.backend_step, spec) or (self.backend_step,)
            self.reads_prompts = reads_prompts(self.backend_step, spec)

    @property
    def keyed_templates(self) -> tuple[str, ...]:
        """The templates and vocabularies its calls read: their hashes join each call's cache key, so an edit to
        one runs again the calls that read it, and no others (a metric judge reads no rubric)."""
        return (*self.templates, *self.data) if self.reads_prompts else self.data

    @classmethod
    def declare(cls, tools: Any, backends: Any) -> Tool:
        """The tool as a run's `tools:` and `backends:` configure it: its own section and backend entry. A tool
        that reads more of the config says so here (plan_instruction: how the configured editor reads an edit)."""
        config = getattr(tools, cls.config_section) if cls.config_section else None
        return cls(config, getattr(backends, cls.backend_step) if cls.backend_step else None)

    def setup(self, backend: Any) -> None:
        """Takes the backend, loaded where the tool runs. A tool with a backend keeps it under its own name."""
        raise NotImplementedError(f"{self.name} runs no backend")

    def __call__(self, inp: Any, ctx: ToolContext) -> BaseModel:
        raise NotImplementedError


class Verdict(BaseModel, frozen=True):
    """A judge's scores (0-10 each) and one reason per score. The judge scores; policy decides."""

    judge: str
    scores: dict[str, float]
    reasons: dict[str, str]
