"""(step, kind) -> backend class, imported only when chosen, so the cpu profile never imports torch.
A backend's options are its constructor's keyword arguments, validated against its type hints."""

from __future__ import annotations

import importlib
import inspect
import re
import typing
from importlib import metadata
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from models.checkpoints import resolve_checkpoint, weights_identity
from models.pool import ModelPool

BACKENDS: dict[str, dict[str, str]] = {
    "captioner": {
        "metric": "models.cpu.metric_captioner:MetricCaptioner",
        "qwen2_5_vl": "models.qwen_vl:QwenVLCaptioner",
        "openai": "models.vlm_openai:OpenAICaptioner",
    },
    "planner": {
        "rules": "models.cpu.rule_planner:RulePlanner",
        "openai": "models.llm_openai:OpenAIPlanner",
        "qwen2_5_vl": "models.qwen_vl:QwenVLPlanner",
    },
    "editor": {
        "opencv_styles": "models.cpu.styles:StyleEditor",
        "qwen_image_edit": "models.image_edit:QwenImageEditor",
        "flux_kontext": "models.image_edit:FluxKontextEditor",
    },
    "depth": {
        "depth_anything": "models.depth:DepthAnythingEstimator",
    },
    "propagator": {
        "example": "models.cpu.propagation:ExamplePropagator",
        "wan_vace": "models.wan_vace:WanVacePropagator",
    },
    "enhancer": {
        "flow_filter": "models.cpu.temporal_filter:FlowTemporalFilter",
        "wan_v2v": "models.wan_enhance:WanVideoEnhancer",
    },
    "keyframe_judge": {
        "metric": "models.cpu.metric_judge:MetricImageJudge",
        "qwen2_5_vl": "models.qwen_vl:QwenVLImageJudge",
        "openai": "models.vlm_openai:OpenAIImageJudge",
    },
    "video_judge": {
        "metric": "models.cpu.metric_judge:MetricVideoJudge",
        "qwen2_5_vl": "models.qwen_vl:QwenVLVideoJudge",
        "openai": "models.vlm_openai:OpenAIVideoJudge",
    },
    "editto": {
        "wan_vace": "models.editto_trainer:EdittoTrainer",
    },
    "clip_scorer": {
        "clip": "models.clip_score:ClipScorer",
    },
}


INJECTED = ("self", "pool")  # constructor arguments the registry supplies, never config
# Spec keys the agent reads (cost, clock, time limit, Ray actor pool), never passed to the backend.
RESOURCE_KEYS = ("devices", "clock", "timeout_s", "actors", "gpus", "cpus", "device_seconds_per_1k_tokens")
REMOTE_KINDS = ("openai",)  # an endpoint elsewhere: it holds no device of ours
# Backend options that cannot change what a call returns, each with the reason; every other option (and the
# weights' identity) is part of the key a call is cached under, so changing it runs the call again.
OUTPUT_NEUTRAL: dict[str, str] = {
    "devices": "what a call is charged, not what it computes",
    "clock": "how the seconds a call held its device are measured",
    "timeout_s": "when a hung call is given up; a call that returns returns the same",
    "actors": "how many Ray actors serve the tool",
    "gpus": "the GPU share each Ray actor reserves",
    "cpus": "the CPU share each Ray actor reserves",
    "device_seconds_per_1k_tokens": "what an endpoint's tokens are charged",
    "device": "which device holds the weights: the same model and arithmetic",
    "cpu_offload": "where the weights wait between layers: the same model and arithmetic",
    "batch_size": "how many frames one forward pass takes; each frame is computed alone",
    "base_url": "where the named model is served; the model's name is keyed",
    "api_key_env": "which environment variable holds the secret",
    "request_timeout_s": "how long one try of a request may take; an answer that arrives is the same",
    "deadline_s": "how long all tries of a request may take",
    "max_attempts": "how often a request that got no answer is tried again",
    "workers": "how many devices share Editto's global batch: the same samples in the same order, summed in "
    "another order (floating-point rounding only)",
    "checkpoint_every": "how often a data-parallel round saves its progress for a restarted worker to continue",
    "max_failures": "how often Ray Train restarts a round's failed workers before the round fails",
}


def resource_defaults(kind: str | None) -> dict[str, Any]:
    """What a backend kind holds unless its spec says otherwise: nothing for a remote endpoint, a CPU core
    (measured as CPU time) for our CPU algorithms, one device measured in wall time for the rest."""
    if kind in REMOTE_KINDS:
        return {"devices": 0, "gpus": 0}
    if any(kinds.get(kind or "", "").startswith("models.cpu.") for kinds in BACKENDS.values()):
        return {"clock": "process_cpu", "gpus": 0}
    return {}


class BackendConfigError(ValueError):
    """A backend spec names an unknown kind or gives options the backend does not take."""


def backend_class(step: str, kind: str) -> type:
    if step not in BACKENDS:
        raise BackendConfigError(f"backends.{step}: unknown step (known: {', '.join(BACKENDS)})")
    if kind not in BACKENDS[step]:
        raise BackendConfigError(f"backends.{step}.kind: {kind!r} is not one of {', '.join(BACKENDS[step])}")
    module, name = BACKENDS[step][kind].split(":")
    try:
        return getattr(importlib.import_module(module), name)
    except ImportError as err:  # the cpu profile's install has no torch: say which extra brings it
        extra = extra_providing(err.name) or "models"
        raise BackendConfigError(
            f"backends.{step}.kind: the {extra} extra is not installed (no module named {err.name}): "
            f"pip install -e '.[{extra}]'"
        ) from err


def extra_providing(module: str | None) -> str | None:
    """The extra of this project that installs `module` (torch: models, torchao: fp8), read from the installed
    package's requirements, so no list here can go stale."""
    try:
        requirements = metadata.requires("ditto-agent") or []
    except metadata.PackageNotFoundError:
        return None
    for requirement in requirements:
        name, _, marker = requirement.partition(";")
        distribution = re.split(r"[\[<>=!~ ]", name.strip(), maxsplit=1)[0]
        extra = re.search(r"extra == .([\w-]+).", marker)
        if extra and distribution.lower().replace("-", "_") == (module or "").split(".")[0].lower():
            return extra.group(1)
    return None


def options_model(cls: type) -> type[BaseModel]:
    hints = typing.get_type_hints(cls.__init__)
    fields: dict[str, Any] = {}
    for pname, param in inspect.signature(cls.__init__).parameters.items():
        if pname in INJECTED or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        default = ... if param.default is inspect.Parameter.empty else param.default
        fields[pname] = (hints.get(pname, Any), default)
    return create_model(f"{cls.__name__}Options", __config__=ConfigDict(extra="forbid"), **fields)


def validate_backend(step: str, spec: dict[str, Any]) -> dict[str, Any]:
    """The spec's options, checked; raises BackendConfigError naming the key at fault."""
    if "kind" not in spec:
        raise BackendConfigError(f"backends.{step}: missing 'kind'")
    cls = backend_class(step, spec["kind"])
    options = {k: v for k, v in spec.items() if k != "kind" and k not in RESOURCE_KEYS}
    try:
        return options_model(cls).model_validate(options).model_dump()
    except ValidationError as err:
        problems = "; ".join(f"backends.{step}.{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors())
        raise BackendConfigError(problems) from err


def backend_settings(step: str, spec: dict[str, Any]) -> dict[str, Any]:
    """Everything in a backend spec that can change its outputs: its kind, every validated option (defaults
    filled in, so spelling one out changes nothing) but the OUTPUT_NEUTRAL ones, and for each checkpoint
    path the identity of the files there."""
    options = validate_backend(step, spec)
    keyed: dict[str, Any] = {"kind": spec["kind"]}
    for name, value in sorted(options.items()):
        if name in OUTPUT_NEUTRAL:
            continue
        is_path = name == "path" or name.endswith("_path")
        keyed[name] = weights_identity(value) if is_path and isinstance(value, str) else value
    return keyed


def backend_id(step: str, spec: dict[str, Any]) -> str:
    """The spec_id the backend will have, from its spec alone, without loading it: a CPU algorithm's names its
    code's version (a class constant), a model's its checkpoint and settings (the class's `identity`)."""
    cls = backend_class(step, spec["kind"])
    identity = getattr(cls, "identity", None)
    if identity is None:
        return cls.spec_id
    options = validate_backend(step, spec)
    if isinstance(options.get("path"), str):  # named as the resolved folder is: a tiny model by its name
        options["path"] = options["path"].removeprefix("tiny:")
    return identity(**options)


def reads_prompts(step: str, spec: dict[str, Any]) -> bool:
    """Whether the backend reads the prompts its tool renders (a model does; a metric captioner or judge and the
    rule planner work from their input alone), from its class, without loading it."""
    return bool(getattr(backend_class(step, spec["kind"]), "reads_prompts", False))


def resident_model(step: str, spec: dict[str, Any]) -> tuple[str, ...] | None:
    """The resident model a backend holds, when backends of other steps can share it (its class has a
    `model_key`, as the Qwen2.5-VL roles do): the key its ModelPool entry has. None: a model of its own."""
    model_key = getattr(backend_class(step, spec["kind"]), "model_key", None)
    if model_key is None:
        return None
    options = validate_backend(step, spec)
    return model_key(*(options[name] for name in inspect.signature(model_key).parameters))


def build_backend(step: str, spec: dict[str, Any], pool: ModelPool, allow_download: bool = False) -> Any:
    """The backend, with its checkpoint resolved first (a missing one fails here, naming step and path)."""
    cls = backend_class(step, spec["kind"])
    options = validate_backend(step, spec)
    if "path" in options:
        options["path"] = resolve_checkpoint(step, options["path"], allow_download)
    if "pool" in inspect.signature(cls.__init__).parameters:
        options["pool"] = pool
    return cls(**options)
