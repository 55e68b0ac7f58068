"""A call's key covers every setting that can change its output: each backend option (but the few listed as
output-neutral in models.registry.OUTPUT_NEUTRAL), each field of the tool's own config section, and the files
behind each checkpoint path. A call made under other settings runs again."""

from __future__ import annotations

import typing
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel
from sqlmodel import Session, select

from agent.calls import CallSite, ToolCaller
from agent.config import load_config
from models.checkpoints import weights_identity
from models.registry import BACKENDS, OUTPUT_NEUTRAL, backend_class, backend_settings, options_model
from prompts.loader import PromptBook
from store.artifacts import ArtifactStore
from store.engine import open_engine
from store.tables import Episode, Run, ToolCall
from tools import TOOLS, ToolsConfig, build_toolkit, declare_tools
from tools.ingest import ingest_input

REQUIRED = {"base_url": "http://127.0.0.1:8000/v1", "model": "m"}


def changed(value: Any, annotation: Any) -> list[Any]:
    """Values of the annotated type other than `value`, most natural first."""
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) is typing.Literal:
        return [a for a in args if a != value]
    candidates: list[Any] = []
    for kind in [annotation, *args]:
        if kind is bool:
            candidates.append(not value)
        elif kind is int:
            candidates.append((value or 0) + 1)
        elif kind is float:
            candidates.append((value or 0.0) * 2 + 1.0)
        elif kind is str:
            candidates.append(f"{value or ''}x")
        elif typing.get_origin(kind) is tuple:
            candidates.append((*(value or ()), "x"))
        elif kind is type(None) and value is not None:
            candidates.append(None)
    return [c for c in candidates if c != value]


def base_spec(step: str, kind: str, weights: Path) -> tuple[dict[str, Any], type[BaseModel]]:
    model = options_model(backend_class(step, kind))
    spec: dict[str, Any] = {"kind": kind}
    for name, field in model.model_fields.items():
        if field.is_required():
            spec[name] = str(weights) if name == "path" else REQUIRED[name]
    return spec, model


BACKEND_KINDS = [(step, kind) for step, kinds in BACKENDS.items() for kind in kinds]


@pytest.mark.parametrize(("step", "kind"), BACKEND_KINDS, ids=[f"{s}.{k}" for s, k in BACKEND_KINDS])
def test_every_backend_option_but_the_neutral_ones_changes_the_key(step: str, kind: str, tmp_path: Path) -> None:
    weights = tmp_path / "weights"
    weights.mkdir()
    (weights / "model.safetensors").write_bytes(b"0")
    spec, model = base_spec(step, kind, weights)
    key = backend_settings(step, spec)
    for name, field in model.model_fields.items():
        value = spec.get(name, field.default)
        other = {**spec, name: changed(value, field.annotation)[0]}
        if name == "path" or name.endswith("_path"):
            other_weights = tmp_path / f"other-{name}"
            other_weights.mkdir()
            other[name] = str(other_weights)
        if name in OUTPUT_NEUTRAL:
            assert backend_settings(step, other) == key, f"{step}.{kind}.{name} is listed as output-neutral"
        else:
            assert backend_settings(step, other) != key, f"backends.{step}.{name} is not part of the call key"


def test_spelling_out_a_default_leaves_the_key_alone() -> None:
    assert backend_settings("propagator", {"kind": "example"}) == backend_settings(
        "propagator", {"kind": "example", "stabilise": 0.6, "timeout_s": 5, "cpus": 0.5}
    )


@pytest.mark.parametrize("section", list(ToolsConfig.model_fields))
def test_every_field_of_a_tools_config_section_changes_the_key_of_the_tools_that_read_it(
    section: str, small_config
) -> None:  # type: ignore[no-untyped-def]
    cfg = small_config()
    readers = [name for name, tool in TOOLS.items() if tool.config_section == section]
    assert readers, f"tools.{section} is read by no tool"
    config = getattr(cfg.tools, section)
    before = declare_tools(cfg.tools, cfg.backends, readers)
    for name, field in type(config).model_fields.items():
        value = changed(getattr(config, name), field.annotation)[0]
        other = cfg.tools.model_copy(update={section: config.model_copy(update={name: value})})
        for tool, after in declare_tools(other, cfg.backends, readers).items():
            assert after.settings != before[tool].settings, f"tools.{section}.{name} is not part of {tool}'s call key"


def test_every_model_backed_tool_keys_its_backend(small_config) -> None:  # type: ignore[no-untyped-def]
    cfg = small_config()
    for tool in declare_tools(cfg.tools, cfg.backends, TOOLS).values():
        if tool.backend_step is not None:
            assert tool.settings["backend"]["kind"] == getattr(cfg.backends, tool.backend_step)["kind"]


def test_the_weights_identity_follows_the_files_not_the_name(tmp_path: Path) -> None:
    weights = tmp_path / "w"
    (weights / "sub").mkdir(parents=True)
    (weights / "sub" / "a.safetensors").write_bytes(b"12")
    first = weights_identity(str(weights))
    (weights / ".cache").mkdir()
    (weights / ".cache" / "download.lock").write_text("")  # a hub client's bookkeeping: not weights
    assert weights_identity(str(weights)) == first
    (weights / "sub" / "a.safetensors").write_bytes(b"123")
    second = weights_identity(str(weights))
    assert second != first
    (weights / "b.json").write_text("{}")
    assert weights_identity(str(weights)) not in (first, second)
    assert weights_identity("tiny:wan_vace") == "tiny:wan_vace"  # built from its config, which the code fixes


def caller_for(cfg, tmp_path: Path) -> ToolCaller:  # type: ignore[no-untyped-def]
    engine = open_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    with Session(engine) as s:
        if s.get(Run, "r") is None:
            s.add(Run(id="r", profile="cpu", budget_device_seconds=1, seed=0, config_json="{}"))
            s.commit()
            s.add_all(Episode(id=e, run_id="r", index=0, clip_path="x", variant=0, seed=0) for e in ("e1", "e2"))
            s.commit()
    toolkit = build_toolkit(cfg.tools, cfg.backends, wanted=["ingest"])
    return ToolCaller(engine, toolkit, ArtifactStore(tmp_path, engine), PromptBook())


def test_an_ingest_under_another_frame_rate_runs_again(tmp_path: Path, small_config, clips: list[Path]) -> None:  # type: ignore[no-untyped-def]
    """The issue's case: a new run with tools.ingest {fps: 6, num_frames: 17} was served the 12 fps ingest."""
    inp = ingest_input(clips[0])
    first = caller_for(small_config(), tmp_path).call("ingest", inp, CallSite("r", "e1", "ingest", 0))
    slower = small_config(tools={"ingest": {"fps": 6, "num_frames": 17}})
    second = caller_for(slower, tmp_path).call("ingest", inp, CallSite("r", "e2", "ingest", 0))
    assert (first.fps, second.fps) == (12, 6)
    with Session(open_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")) as s:
        assert [row.reused_call_id for row in s.exec(select(ToolCall).order_by(ToolCall.id))] == [None, None]


class Probe(BaseModel):
    clip: str = "a.mp4"


def call_keys(cfg, prompts: Path | None, io: ArtifactStore) -> dict[str, str]:  # type: ignore[no-untyped-def]
    tools = declare_tools(cfg.tools, cfg.backends, TOOLS)
    caller = ToolCaller(io.engine, tools, io, PromptBook(prompts))
    return {name: caller.call_key(tool, Probe()) for name, tool in tools.items()}


EDITED_TEMPLATES_RERUN = {  # profile -> the template edited -> the tools whose calls run again
    "cpu": {  # metric captioner and judges, the rule planner: they read the vocabulary, no prompt
        "judge_video.j2": set(),
        "caption_clip.j2": set(),
        "plan_instruction.user.j2": set(),
        "edit_vocabulary.yaml": {"plan_instruction"},
    },
    "tiny": {  # Qwen2.5-VL in every role: it reads every prompt
        "judge_video.j2": {"judge_video"},
        "caption_clip.j2": {"caption_clip"},
        "plan_instruction.user.j2": {"plan_instruction"},
        "edit_vocabulary.yaml": {"plan_instruction"},
    },
}


@pytest.mark.parametrize("profile", list(EDITED_TEMPLATES_RERUN))
def test_an_edited_template_runs_again_only_the_calls_whose_backend_reads_it(profile: str, tmp_path: Path) -> None:
    """On the cpu profile, editing judge_video.j2, which the metric judge never reads, ran every video judge again."""
    if profile == "tiny":
        pytest.importorskip("torch")
    cfg = load_config(profile)
    io = ArtifactStore(tmp_path, open_engine(f"sqlite:///{tmp_path / 'keys.sqlite'}"))
    before = call_keys(cfg, None, io)
    for template, rerun in EDITED_TEMPLATES_RERUN[profile].items():
        folder = tmp_path / template
        folder.mkdir()
        comment = "\n# edited\n" if template.endswith(".yaml") else "\n{# edited #}\n"
        (folder / template).write_text(PromptBook().source(template).text + comment)
        after = call_keys(cfg, folder, io)
        assert {name for name in before if after[name] != before[name]} == rerun, template
