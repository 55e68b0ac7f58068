"""What the Ray tests share: a run on one clip with a scripted LLM planner (whose slow replies are the calls a
test interrupts), and what must hold of a run that was disturbed."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from sqlalchemy import func
from sqlmodel import Session, select

from agent.runner import Factory
from agent.sources import sample_clips
from store.tables import Episode, ToolCall

POOLED = ("ingest", "caption_clip", "plan_instruction", "edit_keyframe", "judge_keyframe", "propagate")
# Two actors where episodes queue, one elsewhere; no CPU reserved, so a 2-CPU machine schedules them all.
POOLS = {t: {"actors": 2 if t in POOLED[3:] else 1, "cpus": 0} for t in (*POOLED, "enhance_temporal", "judge_video")}


def one_clip_config(tmp_path: Path, small_config, url: str, concurrency: int = 2, **options: Any):  # type: ignore[no-untyped-def]
    source = tmp_path / "source"
    source.mkdir(parents=True)
    shutil.copy(sample_clips()[0], source / "clip.mp4")
    planner = {"kind": "openai", "base_url": url, "model": "m", **options.pop("planner", {})}
    return small_config(
        **{
            "out": tmp_path / "out",
            "source_dir": source,
            "episodes_per_clip": 2,
            "concurrency": concurrency,
            "executor": "ray",
            "pools": {**POOLS, "plan_instruction": {"actors": 2, "cpus": 0}},
            "backends": {"planner": planner},
            **options,
        }
    )


def outcome(factory: Factory) -> dict[str, Any]:
    with Session(factory.engine) as s:
        episodes = s.exec(select(Episode).order_by(Episode.index)).all()
        plans = s.exec(select(ToolCall).where(ToolCall.tool == "plan_instruction", ToolCall.error_kind.is_(None))).all()  # type: ignore[union-attr]
    return {
        "decisions": [(e.index, e.status, e.reason) for e in episodes],
        "instructions": sorted(p.output_json for p in plans),  # type: ignore[misc]
    }


def charged_once(factory: Factory) -> bool:
    """Every call that ran is charged to the run, in its one row; none reused from the cache is charged."""
    with Session(factory.engine) as s:
        calls = s.exec(select(ToolCall)).all()
    ran = [c for c in calls if c.reused_call_id is None]
    return all(c.run_id == factory.run.id for c in ran) and all(c.device_seconds == 0 for c in calls if c not in ran)


def charges(factory: Factory) -> int:
    """The calls that ran, each charged once."""
    with Session(factory.engine) as s:
        return s.exec(select(func.count()).select_from(ToolCall).where(ToolCall.reused_call_id.is_(None))).one()  # type: ignore[union-attr]
