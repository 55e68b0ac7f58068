"""Screening the source clips before any episode (the paper removes near-duplicates from its sources): each
clip's perceptual fingerprint through call() (cached by file, charged once), and for each clip the earlier
one, in sorted order, that shows the same footage. Sorted order and cached fingerprints make the answer the
same on every resume."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from agent import policy
from agent.budget import run_level_charge
from agent.calls import CallSite
from agent.context import RunContext
from tools.base import ToolError
from tools.ingest import FingerprintClipInput


class SourceScreen:
    """Clip path -> the earlier clip (in sorted order) that shows the same footage. Clips are screened in the
    sorted order of the source folder as far as the clip asked for, so the answer is the same whichever
    episodes a resumed run still has to do, and a large folder is screened only as far as the run gets."""

    def __init__(self, ctx: RunContext, clips: Iterator[Path]) -> None:
        self.ctx, self.clips = ctx, clips
        self.seen: dict[str, list[int]] = {}
        self.duplicates: dict[str, str] = {}
        self.screened: set[str] = set()
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
        """A clip that cannot be read is left to ingest, which refuses it by name."""
        self.screened.add(str(clip))
        ctx = self.ctx
        try:
            st = os.stat(clip)
            inp = FingerprintClipInput(clip_path=str(clip), clip_size=st.st_size, clip_mtime_ns=st.st_mtime_ns)
            site = CallSite(ctx.run_id, None, f"screen {clip}", 0)
            out = ctx.caller.call("fingerprint_clip", inp, site)
        except (OSError, ToolError):
            return
        self.charged_s += run_level_charge(ctx.engine, ctx.run_id, site.node)
        hashes = [int(h, 16) for h in out.frame_hashes]
        if original := policy.duplicate_of(hashes, self.seen, ctx.config.policy):
            self.duplicates[str(clip)] = original
        else:
            self.seen[str(clip)] = hashes
