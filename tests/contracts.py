"""What every tool promises, tested once here and run for each tool on its cpu backend (the idea of
diffusers' PipelineTesterMixin). A tool's test class names the tool, builds a good input from a Bench of
real artifacts, and lists the failures it must report as a ToolError of a given kind naming a field."""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pytest
from pydantic import BaseModel, ValidationError

from agent.config import RunConfig, deep_merge, load_config
from prompts.loader import PromptBook
from store.artifacts import ArtifactStore
from store.engine import open_engine
from tests.conftest import SMALL
from tools import build_toolkit
from tools.base import Tool, ToolContext, ToolError
from tools.edit_keyframe import EditKeyframeInput
from tools.ingest import IngestOutput
from tools.ingest import ingest_input as ingest_input  # the tests build inputs as the agent does
from tools.propagate import PropagateInput

ARTIFACT_REF = re.compile(r"^[0-9a-f]{64}\.[a-z0-9]+$")
TINY_CLIP = {"tools": {"ingest": {"num_frames": 9, "fps": 12, "max_side": 64}}, "policy": {"min_frames": 9}}


@dataclass
class Bench:
    """Real artifacts from the cpu tools, in a store of the test's own: a source clip, its key frame, an
    edited key frame and an edited video."""

    cfg: RunConfig
    io: ArtifactStore
    clip_file: Path
    ingested: IngestOutput
    edited_keyframe: str
    edited_video: str

    def context(self) -> ToolContext:
        return ToolContext(io=self.io, prompts=PromptBook())

    def tool(self, name: str) -> Tool:
        return build_toolkit(self.cfg.tools, self.cfg.backends, wanted=[name])[name]

    def run(self, name: str, inp: BaseModel) -> Any:
        return self.tool(name)(inp, self.context())


def make_bench(tmp_path: Path, clip: Path) -> Bench:
    cfg = load_config("cpu", None, deep_merge(deep_merge(SMALL, TINY_CLIP), {"out": tmp_path / "out"}))
    io = ArtifactStore(tmp_path / "out", open_engine(f"sqlite:///{tmp_path / 'ditto.db'}"))
    clip_file = tmp_path / "clips" / clip.name
    clip_file.parent.mkdir()
    shutil.copy(clip, clip_file)
    bench = Bench(cfg, io, clip_file, None, "", "")  # type: ignore[arg-type]
    bench.ingested = bench.run("ingest", ingest_input(clip_file))
    instruction = "Make the video black and white."
    edit = EditKeyframeInput(keyframe=bench.ingested.keyframe, instruction=instruction, seed=1)
    bench.edited_keyframe = bench.run("edit_keyframe", edit).edited_keyframe
    propagate = PropagateInput(
        clip=bench.ingested.clip,
        edited_keyframe=bench.edited_keyframe,
        keyframe_index=bench.ingested.keyframe_index,
        depth=None,
        prompt=instruction,
        seed=1,
    )
    bench.edited_video = bench.run("propagate", propagate).edited_video
    return bench


def set_up_on(tool: Tool, backend: Any) -> Tool:
    """The tool, set up on `backend` (a misbehaving one, a tiny model) instead of the one its config names, and
    named after it."""
    tool.setup(backend)
    tool.backend_id = backend.spec_id
    return tool


# A failure a tool must report: the tool to call (perhaps over a misbehaving backend), its input, and the
# ToolError's kind and field.
Failure = tuple[Tool, BaseModel, str, str | None]


class ToolContract:
    tool_name: ClassVar[str]

    def make_tool(self, bench: Bench) -> Tool:
        return bench.tool(self.tool_name)  # on the cpu profile's backend

    def good_input(self, bench: Bench) -> BaseModel:
        raise NotImplementedError

    def failures(self, bench: Bench) -> list[Failure]:
        return []

    @pytest.fixture(scope="class")
    @classmethod
    def bench(cls, tmp_path_factory: pytest.TempPathFactory, clips: list[Path]) -> Bench:
        return make_bench(tmp_path_factory.mktemp(cls.tool_name), clips[0])  # shared by the class: read only

    def test_input_names_a_field_of_the_wrong_type(self, bench: Bench) -> None:
        tool, good = self.make_tool(bench), self.good_input(bench).model_dump()
        for field in good:
            with pytest.raises(ValidationError) as err:
                tool.Input.model_validate({**good, field: {"not": "this"}})
            assert {e["loc"][0] for e in err.value.errors()} == {field}

    def test_input_refuses_an_unknown_field(self, bench: Bench) -> None:
        tool = self.make_tool(bench)
        with pytest.raises(ValidationError, match="bogus"):
            tool.Input.model_validate({**self.good_input(bench).model_dump(), "bogus": 1})

    def test_output_is_plain_data_whose_refs_are_stored_files(self, bench: Bench) -> None:
        tool, ctx = self.make_tool(bench), bench.context()
        out = tool(self.good_input(bench), ctx)
        assert isinstance(out, tool.Output)
        assert tool.Output.model_validate_json(out.model_dump_json()) == out  # JSON and back: no objects
        refs = [v for v in json.loads(out.model_dump_json()).values() if isinstance(v, str) and ARTIFACT_REF.match(v)]
        assert all(bench.io.path(ref).is_file() for ref in refs)
        assert tool.backend_id and tool.resources.devices >= 1  # the cost it reports is device time

    def test_same_input_gives_the_same_output(self, bench: Bench) -> None:
        tool, inp = self.make_tool(bench), self.good_input(bench)
        assert tool(inp, bench.context()) == tool(inp, bench.context())

    def test_renders_only_the_templates_in_its_cache_key(self, bench: Bench) -> None:
        tool, ctx = self.make_tool(bench), bench.context()
        tool(self.good_input(bench), ctx)
        assert {p.name for p in ctx.rendered} <= set(tool.keyed_templates)

    def test_failures_are_errors_of_their_kind_naming_the_field(self, bench: Bench) -> None:
        cases = self.failures(bench)
        for tool, inp, kind, field in cases:
            with pytest.raises(ToolError) as err:
                tool(inp, bench.context())
            assert (err.value.kind, err.value.field) == (kind, field), err.value
