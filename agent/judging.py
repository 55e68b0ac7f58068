"""The judges measured on case folders: the configured pre-filter, key-frame judge and video judge run on
labelled triplets (store/cases.py), without planning or editing, and the run's policy decides each case as it
decides an episode. `judges score` prints the verdicts; `judges calibrate` (agent/calibration.py) compares
them with the labels."""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from agent import policy
from agent.config import RunConfig
from agent.executors import LocalExecutor
from prompts.loader import PromptBook
from store.artifacts import ArtifactStore
from store.cases import Case
from store.engine import open_engine
from tools import build_toolkit
from tools.base import Tool, ToolContext, ToolError, as_tool_error
from tools.ingest import IngestInput, IngestOutput, ingest_input
from tools.judge import JudgeInput

JUDGING_TOOLS = ("ingest", "judge_keyframe", "judge_video")
STAGES: tuple[policy.Stage, ...] = ("keyframe", "video")


@dataclass(frozen=True)
class CaseVerdict:
    case: Case
    accepted: bool
    reason: str  # 'passed', or why not: the pre-filter's measure, the failing criteria, a fault
    scores: dict[str, dict[str, float]] = field(default_factory=dict)  # stage -> criterion -> score
    reasons: dict[str, dict[str, str]] = field(default_factory=dict)
    thresholds: dict[str, dict[str, float]] = field(default_factory=dict)  # stage -> what the policy asked
    prefilter: str | None = None  # the pre-filter's refusal ('scene_cut: cut_score=0.6 > 0.4'), else None
    error: str | None = None  # the case could not be judged (an unreadable file, a judge that failed)

    def as_json(self) -> dict[str, Any]:
        c = self.case
        return {
            "row": c.row,
            "source": c.source,
            "edited": c.edited,
            "edited_keyframe": c.edited_keyframe,
            "instruction": c.instruction,
            "category": c.category,
            "label": c.label,
            "note": c.note,
            "accepted": self.accepted,
            "reason": self.reason,
            "scores": self.scores,
            "reasons": self.reasons,
            "thresholds": self.thresholds,
            "prefilter": self.prefilter,
            "error": self.error,
        }


class CaseJudge:
    """The configured judging tools, loaded once, and a scratch artifact store for the cases' frames."""

    def __init__(self, cfg: RunConfig, scratch: Path) -> None:
        # Frame t of `edited` is frame t of `source`: both are read from their first frame, never from a
        # window after a shot cut (a cut stays in the source's window, and the pre-filter refuses it).
        tools = cfg.tools.model_copy(update={"ingest": cfg.tools.ingest.model_copy(update={"max_start_s": 0.0})})
        self.cfg, self.ingest_cfg = cfg, tools.ingest
        self.toolkit: dict[str, Tool] = build_toolkit(tools, cfg.backends, cfg.allow_download, JUDGING_TOOLS)
        self.io = ArtifactStore(scratch, open_engine(f"sqlite:///{scratch / 'cases.db'}"))
        self.prompts = PromptBook(cfg.prompts_dir)
        self.executor = LocalExecutor()
        self.ingested: dict[IngestInput, IngestOutput] = {}

    def run(self, name: str, inp: Any) -> Any:
        ctx = ToolContext(io=self.io, prompts=self.prompts)
        done = self.executor.run(self.toolkit[name], inp, ctx)
        if done.error is not None:
            raise as_tool_error(name, done.error)
        return done.output

    def ingest(self, case: Case) -> IngestOutput:
        """The case's source clip and its measures, once per file: the cases of a folder share a few sources."""
        inp = ingest_input(case.source_path)
        if inp not in self.ingested:
            self.ingested[inp] = self.run("ingest", inp)
        return self.ingested[inp]

    def judge(self, case: Case) -> CaseVerdict:
        try:
            ingested = self.ingest(case)
        except ToolError as err:
            return CaseVerdict(case, False, f"source: {err.kind}: {err.detail}", error=err.detail)
        if refused := policy.prefilter_failure(ingested.model_dump(), self.cfg.policy):
            line = f"{refused[0]}: {refused[1]}"
            return CaseVerdict(case, False, f"pre-filter: {line}", prefilter=line)
        try:
            inputs = self.judge_inputs(case, ingested)
            verdicts = {stage: self.run(f"judge_{stage}", inp) for stage, inp in inputs.items()}
        except (ToolError, ValueError) as err:
            detail = err.detail if isinstance(err, ToolError) else str(err)
            return CaseVerdict(case, False, f"not judged: {detail}", error=detail)
        thresholds = {s: policy.pass_thresholds(self.cfg.policy, s, case.category) for s in verdicts}
        failing = {s: policy.failing_criteria(v.scores, thresholds[s]) for s, v in verdicts.items()}
        reason = "; ".join(
            f"{s} judge: "
            + ", ".join(f"{n} {verdicts[s].scores.get(n, 'unscored')} < {thresholds[s][n]:g}" for n in names)
            for s, names in failing.items()
            if names
        )
        return CaseVerdict(
            case,
            not reason,
            reason or "passed",
            scores={s: v.scores for s, v in verdicts.items()},
            reasons={s: v.reasons for s, v in verdicts.items()},
            thresholds=thresholds,
        )

    def judge_inputs(self, case: Case, ingested: IngestOutput) -> dict[str, JudgeInput]:
        """The judges' inputs: the source and the edited video at the profile's frame rate and size, cut to the
        frames both have, and the edited key frame against the source's, when the case has one."""
        cfg = self.ingest_cfg
        source, _ = self.io.read_video(ingested.clip)
        try:
            edited = self.io.decode_source(
                case.edited_path, cfg.fps, cfg.num_frames, cfg.max_side, cfg.max_source_pixels
            )
        except (ValueError, OSError) as err:
            raise ValueError(f"edited: {err}") from err
        frames = [fit_to(f, source.shape[1:3]) for f in edited.frames]
        n = min(len(source), len(frames))
        source_ref = ingested.clip if n == len(source) else self.io.write_video(source[:n], ingested.fps, "source_clip")
        edited_ref = self.io.write_video(np.stack(frames[:n]), ingested.fps, "edited_video")
        text = {"instruction": case.instruction, "target_description": case.target_description or case.instruction}
        inputs = {"video": JudgeInput(source=source_ref, edited=edited_ref, category=case.category, **text)}
        if case.edited_keyframe_path is not None:
            image = cv2.imread(str(case.edited_keyframe_path), cv2.IMREAD_COLOR)
            if image is None:
                raise ValueError(f"edited_keyframe: {case.edited_keyframe_path} is not a readable image")
            keyframe = self.io.write_image(fit_to(cv2.cvtColor(image, cv2.COLOR_BGR2RGB), source.shape[1:3]))
            inputs["keyframe"] = JudgeInput(source=ingested.keyframe, edited=keyframe, category=case.category, **text)
        return dict(sorted(inputs.items(), key=lambda kv: STAGES.index(kv[0])))


def fit_to(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """`rgb` at the source's (height, width): a case's edit may have been saved at another size."""
    if rgb.shape[:2] == size:
        return rgb
    return cv2.resize(rgb, (size[1], size[0]), interpolation=cv2.INTER_AREA)


@contextmanager
def case_judge(cfg: RunConfig) -> Iterator[CaseJudge]:
    with tempfile.TemporaryDirectory(prefix="ditto-cases-") as scratch:
        yield CaseJudge(cfg, Path(scratch))


def score_cases(
    cfg: RunConfig, cases: list[Case], on_case: Callable[[CaseVerdict], None] | None = None
) -> list[CaseVerdict]:
    """Every case judged and decided by the run's policy, in order."""
    verdicts = []
    with case_judge(cfg) as judge:
        for case in cases:
            verdicts.append(judge.judge(case))
            if on_case is not None:
                on_case(verdicts[-1])
    return verdicts
