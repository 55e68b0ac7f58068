"""Screening the source clips before any episode (the paper removes near-duplicates from its sources): each
clip's perceptual fingerprint through call() (cached by file, charged once), and for each clip the earlier
one, in sorted order, that shows the same footage. Sorted order and cached fingerprints make the answer the
same on every resume."""

from __future__ import annotations

import os
from pathlib import Path

from agent import policy
from agent.calls import CallSite
from agent.context import RunContext
from tools.base import ToolError
from tools.ingest import FingerprintClipInput


def screen_sources(ctx: RunContext, clips: list[Path]) -> dict[str, str]:
    """Clip path -> the path of the earlier clip it duplicates. A clip that cannot be read is left to
    ingest, which refuses it by name."""
    seen: dict[str, list[int]] = {}
    duplicates: dict[str, str] = {}
    for clip in clips:
        try:
            st = os.stat(clip)
            inp = FingerprintClipInput(clip_path=str(clip), clip_size=st.st_size, clip_mtime_ns=st.st_mtime_ns)
            out = ctx.caller.call("fingerprint_clip", inp, CallSite(ctx.run_id, None, f"screen {clip}", 0))
        except (OSError, ToolError):
            continue
        hashes = [int(h, 16) for h in out.frame_hashes]
        if original := policy.duplicate_of(hashes, seen, ctx.config.policy):
            duplicates[str(clip)] = original
        else:
            seen[str(clip)] = hashes
    return duplicates
