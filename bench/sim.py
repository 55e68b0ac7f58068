"""Tools that do no work, for simulating and timing the agent (bench/policy.py, bench/overhead.py), or that
only hold a logical GPU for a stage's time inside a Ray actor (bench/scale.py).

They stand in for the episode's tools behind the real ToolCaller: same names, same Input and Output
models, so the real graph, nodes, policy, cache and ledger run unchanged. They do no file I/O (a handful of
placeholder artifacts is written once), so what is measured or simulated is the agent alone. They live in
bench/, not as a `sim` kind in models/registry.py: the real tools around a registry backend decode and
encode video by design, which would swamp what these are for.

Every artifact a simulated tool returns is a tiny file of its own (the hash of the call's input), so the
cache sees what it would see in a real run: a clip is ingested, captioned and given depth once, and a
retried attempt's video is new work.

The judges' verdicts follow a small model of edit quality, drawn deterministically from the call's input:
- a key-frame edit is good with probability `keyframe` (first instruction) or `retry_keyframe` (an
  instruction rewritten from the judge's reasons);
- the key-frame judge sees the edit's quality through noise (`judge_noise`, in units of the quality's
  spread) and scores instruction_fidelity so that, at the profile's threshold, it passes exactly the good
  edits when the noise is 0;
- a video is good when its key frame was good (whether or not a gate looked at it) and, with probability
  `video` (`retry_video` after a rewrite), the propagation and enhancement worked;
- with probability `shape_conflict` a good key frame's edit changed a shape that the source's depth, at the
  category's full control strength, pulls back: its video fails shape_fidelity. Made again at a lower
  control strength (policy.lower_control_on), the conflict is gone with probability `control_fix`, and the
  video is then good as any other.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel

from tools.base import Resources, ToolContext, Verdict
from tools.caption_clip import CaptionClipInput, CaptionClipOutput
from tools.edit_keyframe import EditKeyframeInput, EditKeyframeOutput
from tools.enhance_temporal import EnhanceTemporalInput, EnhanceTemporalOutput
from tools.estimate_depth import EstimateDepthInput, EstimateDepthOutput
from tools.frame_window import SourceWindow
from tools.ingest import FingerprintClipInput, FingerprintClipOutput, IngestInput, IngestOutput
from tools.judge import JudgeInput
from tools.plan_instruction import PlanInstructionInput, PlanInstructionOutput
from tools.propagate import PropagateInput, PropagateOutput

REWRITTEN = " (rewritten from the judge's reasons)"  # how the sim planner marks a rewrite for the judges
CRITERION = "instruction_fidelity"  # the criterion the sim judges score from quality; a failure is rewritten
SHAPE = "shape_fidelity"  # the criterion a video fails when the depth control fights the edit
NORMAL = NormalDist()


@dataclass(frozen=True)
class PassRates:
    keyframe: float = 0.7  # a first key-frame edit is good
    video: float = 0.75  # the video of a good key frame is good
    retry_keyframe: float = 0.5  # a rewritten instruction's key-frame edit is good
    retry_video: float = 0.75  # the video of a rewritten instruction's good key frame is good
    judge_noise: float = 0.1  # the key-frame judge's error, in units of the quality's spread (0-1)
    shape_conflict: float = 0.0  # a good key frame's edit fights the depth control at full strength
    control_fix: float = 0.6  # a lower control strength resolves such a conflict


def uniform(*parts: object) -> float:
    """A number in [0, 1) that the same parts always give."""
    digest = hashlib.blake2b(":".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def score(quality: float, good_above: float, threshold: float) -> float:
    """Map quality in [0, 1] to a 0-10 score that crosses `threshold` where quality crosses `good_above`."""
    quality = min(1.0, max(0.0, quality))
    if quality >= good_above:
        return threshold + (10 - threshold) * (quality - good_above) / max(1e-9, 1 - good_above)
    return threshold * quality / max(1e-9, good_above)


@dataclass
class SimTool:
    """One tool of the graph: returns `answer(inp)` and holds one device, doing nothing else."""

    name: str
    Input: type[BaseModel]
    Output: type[BaseModel]
    answer: Any  # Callable[[BaseModel, Callable[[str], str]], BaseModel]: the input, and a maker of artifacts
    version: ClassVar[str] = "sim-1"
    keyed_templates: ClassVar[tuple[str, ...]] = ()  # it reads none
    backend_id: str = "sim"
    resources: Resources = field(default_factory=lambda: Resources(devices=1, timeout_s=None))
    settings: dict[str, Any] = field(default_factory=dict)  # nothing configured changes what it answers
    model_key: tuple[str, ...] | None = None  # a Ray pool of its own
    hold_s: float = 0.0  # seconds a call holds its device(s) before it answers (bench/scale.py)

    def __call__(self, inp: BaseModel, ctx: ToolContext) -> BaseModel:
        if self.hold_s:
            time.sleep(self.hold_s)
        digest = hashlib.sha256(f"{self.name}:{inp.model_dump_json()}".encode()).digest()

        def artifact(kind: str) -> str:
            return ctx.io.write_array(np.frombuffer(digest + kind.encode(), dtype=np.uint8), f"sim_{kind}")

        return self.answer(inp, artifact)


def sim_toolkit(rates: PassRates, keyframe_pass: dict[str, float], video_pass: dict[str, float]) -> dict[str, SimTool]:
    """The episode's tools, simulated. `keyframe_pass` and `video_pass` are the profile's thresholds the
    scores are calibrated against; the policy under test may use others."""

    def ingest(inp: IngestInput, artifact: Any) -> IngestOutput:
        return IngestOutput(
            clip=artifact("clip"),
            keyframe=artifact("keyframe"),
            keyframe_index=0,
            num_frames=81,
            fps=16.0,
            width=832,
            height=480,
            source_fps=20.0,
            source_width=1280,
            source_height=720,
            source_duration_s=5.05,
            motion=0.01,
            cut_score=0.0,
            contrast=50.0,
            neighbour_correlation=0.9,
            flash_rate=0.0,
        )

    def plan(inp: PlanInstructionInput, artifact: Any) -> PlanInstructionOutput:
        instruction = f"edit {inp.clip_seed}:{inp.slot}" + (REWRITTEN if inp.feedback else "")
        return PlanInstructionOutput(
            instruction=instruction,
            category=inp.category,
            target_description=f"the result of {instruction}",
            planner="sim",
        )

    def keyframe_quality(instruction: str) -> tuple[float, float]:
        """(quality, the quality above which an edit is good) of the key-frame edit for this instruction."""
        good = rates.retry_keyframe if instruction.endswith(REWRITTEN) else rates.keyframe
        return uniform(instruction, "keyframe"), 1 - good

    def verdict(judge: str, thresholds: dict[str, float], value: float, shape: float = 10.0) -> Verdict:
        scores = {name: 10.0 for name in thresholds} | {CRITERION: round(value, 3)}
        if SHAPE in thresholds:
            scores[SHAPE] = shape
        return Verdict(judge=judge, scores=scores, reasons={CRITERION: f"simulated score {value:.2f}"})

    def judge_keyframe(inp: JudgeInput, artifact: Any) -> Verdict:
        quality, good_above = keyframe_quality(inp.instruction)
        seen = quality + rates.judge_noise * NORMAL.inv_cdf(min(max(uniform(inp.instruction, "noise"), 1e-9), 1 - 1e-9))
        return verdict("sim", keyframe_pass, score(seen, good_above, keyframe_pass.get(CRITERION, 5.0)))

    # The control strength each simulated video was made at, by its artifact (propagate, then enhance_temporal).
    strengths: dict[str, float | None] = {}

    def whole(clip: str, depth_video: str | None, keyframe_index: int) -> SourceWindow:
        """Every simulated video is made for all 81 frames of its clip."""
        return SourceWindow(
            clip=clip, depth_video=depth_video, keyframe_index=keyframe_index, start=0, frames=81, of=81
        )

    def propagate(inp: PropagateInput, artifact: Any) -> PropagateOutput:
        made_for = whole(inp.clip, inp.depth_video, inp.keyframe_index)
        out = PropagateOutput(edited_video=artifact("video"), made_for=made_for)
        strengths[out.edited_video] = inp.control_strength
        return out

    def enhance(inp: EnhanceTemporalInput, artifact: Any) -> EnhanceTemporalOutput:
        made_for = whole(inp.clip, inp.depth_video, inp.keyframe_index)
        out = EnhanceTemporalOutput(enhanced_video=artifact("video"), made_for=made_for)
        strengths[out.enhanced_video] = strengths.get(inp.video)
        return out

    def judge_video(inp: JudgeInput, artifact: Any) -> Verdict:
        quality, good_above = keyframe_quality(inp.instruction)
        threshold = video_pass.get(CRITERION, 5.0)
        if quality < good_above:  # a bad key frame makes a bad video, gate or no gate
            return verdict("sim", video_pass, score(quality, good_above, threshold) * 0.5)
        if uniform(inp.instruction, "shape") < rates.shape_conflict:
            lowered = (strengths.get(inp.edited) or 1.0) < 1.0  # the sim's categories are all at full strength
            if not lowered or uniform(inp.instruction, "fix") >= rates.control_fix:
                return verdict("sim", video_pass, 10.0, shape=video_pass.get(SHAPE, 5.0) / 2)
        good = rates.retry_video if inp.instruction.endswith(REWRITTEN) else rates.video
        return verdict("sim", video_pass, score(uniform(inp.instruction, "video"), 1 - good, threshold))

    def fingerprint(inp: FingerprintClipInput, artifact: Any) -> FingerprintClipOutput:
        """Every simulated clip distinct footage: no duplicates to skip."""
        return FingerprintClipOutput(frame_hashes=[hashlib.sha256(inp.clip_path.encode()).hexdigest()[:16]])

    answers: dict[str, tuple[type[BaseModel], type[BaseModel], Any]] = {
        "fingerprint_clip": (FingerprintClipInput, FingerprintClipOutput, fingerprint),
        "ingest": (IngestInput, IngestOutput, ingest),
        "caption_clip": (
            CaptionClipInput,
            CaptionClipOutput,
            lambda inp, artifact: CaptionClipOutput(caption="a clip"),
        ),
        "plan_instruction": (PlanInstructionInput, PlanInstructionOutput, plan),
        "edit_keyframe": (
            EditKeyframeInput,
            EditKeyframeOutput,
            lambda inp, artifact: EditKeyframeOutput(edited_keyframe=artifact("keyframe")),
        ),
        "judge_keyframe": (JudgeInput, Verdict, judge_keyframe),
        "estimate_depth": (
            EstimateDepthInput,
            EstimateDepthOutput,
            lambda inp, artifact: EstimateDepthOutput(depth=artifact("depth"), depth_video=artifact("depth_video")),
        ),
        "propagate": (PropagateInput, PropagateOutput, propagate),
        "enhance_temporal": (EnhanceTemporalInput, EnhanceTemporalOutput, enhance),
        "judge_video": (JudgeInput, Verdict, judge_video),
    }
    return {name: SimTool(name, inp, out, answer) for name, (inp, out, answer) in answers.items()}


@dataclass(frozen=True)
class HeldStage:
    """A stage of bench/scale.yaml: the seconds a call holds its GPUs, and the GPUs an actor holds."""

    seconds: float
    gpus: float


def held_toolkit(cfg: Any, tools: list[str], stages: dict[str, HeldStage]) -> dict[str, SimTool]:
    """The named tools, simulated, for a Ray actor (agent.ray_pools.ToolHost's `build`): a call to a stage
    listed holds its logical GPUs for the stage's seconds and is charged that time x its GPUs; the others
    hold nothing and cost nothing. Verdicts as sim_toolkit's, calibrated to the run's thresholds."""
    toolkit = sim_toolkit(PassRates(), cfg.policy.keyframe_pass, cfg.policy.video_pass)
    for name, stage in stages.items():
        toolkit[name].hold_s = stage.seconds
        toolkit[name].resources = Resources(devices=stage.gpus, gpus=stage.gpus, timeout_s=None)
    for name in toolkit.keys() - stages.keys():
        toolkit[name].resources = Resources(devices=0, gpus=0, timeout_s=None)
    return {name: toolkit[name] for name in tools}
