"""One simulated run through the code `main.py` runs: agent.runner.Factory (the run loop, the graph, the
nodes, the policy, the ToolCaller with its cache and ledger, the sqlmodel store), with the tools of
bench/sim.py. A simulated tool takes no time, so the device cost is counted from what the run did: its
ToolCall rows that ran (not reused from the cache), per tool, times that tool's seconds per call."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml
from langgraph.checkpoint.memory import InMemorySaver
from sqlalchemy import func
from sqlmodel import Session, col, select

from agent.config import PROFILES_DIR, load_config, read_yaml
from agent.episodes import EpisodeRunner
from agent.graph import build_graph
from agent.policy import PolicyConfig
from agent.runner import Factory
from bench.sim import PassRates, sim_toolkit
from store.tables import SECONDS_PER_DAY, Episode, ToolCall

BENCH = Path(__file__).parent


def preset_costs(preset: str, directory: Path = BENCH) -> dict[str, Any]:
    """bench/costs_<preset>.yaml (bench/flops.py): the preset's size, which cards its weights fit, and GPU-seconds
    per call of each tool on each card (`without_sage`: where the preset's SageAttention falls back)."""
    return yaml.safe_load((directory / f"costs_{preset}.yaml").read_text())


def headline_card(costs: dict[str, Any]) -> str:
    """The card a preset's figure is for: the first one (the smallest) its weights fit on alone."""
    return next((card for card, left in costs["gb_left"].items() if left > 0), list(costs["gb_left"])[-1])


def stage_costs(preset: str = "paper", card: str | None = None, fallback: bool = False) -> dict[str, float]:
    """GPU-seconds per call of each tool of a preset on a card (default: its headline card); with `fallback`, on
    PyTorch's attention where the preset asks for SageAttention."""
    costs = preset_costs(preset)
    table = costs["without_sage" if fallback and "without_sage" in costs else "seconds_per_call"]
    return dict(table[card or headline_card(costs)])


def full_policy() -> dict[str, Any]:
    """The full profile's policy: its judges' criteria and thresholds are what the simulation calibrates to."""
    return read_yaml(PROFILES_DIR / "full.yaml")["policy"]


@dataclass
class Outcome:
    episodes: int
    accepted: int
    calls: dict[str, int]  # tool -> calls that ran
    device_seconds: float
    uncharged: tuple[str, ...] = ()  # tools called but not charged

    def priced(self, costs: dict[str, float]) -> Outcome:
        """The same run charged at other GPU-seconds per call (another card, another attention kernel)."""
        return replace(self, device_seconds=charged(self.calls, costs, self.uncharged))

    @property
    def minutes_per_accepted(self) -> float:
        return self.device_seconds / 60 / self.accepted if self.accepted else float("inf")

    @property
    def days_per_million(self) -> float:
        return self.device_seconds / SECONDS_PER_DAY / self.accepted * 1e6 if self.accepted else float("inf")


def clip_folder(root: Path, clips: int) -> Path:
    """Empty files named like clips: the simulated ingest reads nothing, the runner only lists them."""
    folder = root / "clips"
    folder.mkdir(exist_ok=True)
    for k in range(clips):
        (folder / f"clip{k:06d}.mp4").touch()
    return folder


def calls_that_ran(engine: Any, run_id: str) -> dict[str, int]:
    with Session(engine) as s:
        rows = s.exec(
            select(ToolCall.tool, func.count())
            .join(Episode, col(Episode.id) == ToolCall.episode_id)
            .where(Episode.run_id == run_id, col(ToolCall.reused_call_id).is_(None))
            .group_by(ToolCall.tool)
        ).all()
    return {tool: int(n) for tool, n in rows}


@contextmanager
def sim_factory(
    episodes: int,
    rates: PassRates,
    policy: dict[str, Any] | None = None,
    episodes_per_clip: int = 4,
    root: Path | None = None,
    checkpointer: str = "memory",
    concurrency: int = 1,
) -> Iterator[Factory]:
    """A run (agent.runner.Factory) over `episodes` empty clips with the simulated tools, in a temporary
    folder. `checkpointer`: "memory" (LangGraph's InMemorySaver) or "sqlite" (what main.py uses)."""
    base = full_policy()
    with tempfile.TemporaryDirectory(dir=root or _fast_tmp()) as tmp:
        out = Path(tmp)
        cfg = load_config(
            "cpu",
            overrides={
                "out": str(out),
                "source_dir": str(clip_folder(out, -(-episodes // episodes_per_clip))),
                "episodes_per_clip": episodes_per_clip,
                "budget_gpu_days": 1e9,  # the simulated tools take no time: the ledger stays near 0
                "concurrency": concurrency,
            },
        )
        # The full profile's policy as it is, not merged into the cpu profile's: that one's per-category tables
        # name the metric judges' criteria, which the simulated judges do not score.
        cfg = cfg.model_copy(update={"policy": PolicyConfig.model_validate({**base, **(policy or {})})})
        factory = Factory(cfg)
        factory.context.caller.toolkit = sim_toolkit(rates, base["keyframe_pass"], base["video_pass"])
        if checkpointer == "memory":
            factory.checkpointer = InMemorySaver()
            factory.episodes = EpisodeRunner(build_graph(factory.checkpointer), factory.context, factory.checkpointer)
        try:
            yield factory
        finally:
            factory.engine.dispose()


def simulate(
    episodes: int,
    rates: PassRates,
    costs: dict[str, float],
    policy: dict[str, Any] | None = None,
    uncharged: tuple[str, ...] = (),
    episodes_per_clip: int = 4,
    root: Path | None = None,
) -> Outcome:
    """Run `episodes` simulated episodes under `policy` (overrides of the full profile's) and count the
    device cost. Tools in `uncharged` are called (the graph has them) but cost nothing: the paper's order
    has no key-frame judge."""
    with sim_factory(episodes, rates, policy, episodes_per_clip, root) as factory:
        result = factory.execute()
        calls = calls_that_ran(factory.engine, factory.run.id)
    episodes_run = result.totals.accepted + result.totals.discarded
    return Outcome(episodes_run, result.totals.accepted, calls, charged(calls, costs, uncharged), uncharged)


def charged(calls: dict[str, int], costs: dict[str, float], uncharged: tuple[str, ...] = ()) -> float:
    return sum(n * costs.get(tool, 0.0) for tool, n in calls.items() if tool not in uncharged)


def _fast_tmp() -> str | None:
    """A memory-backed folder when the machine has one: the store's writes are not what is simulated."""
    shm = Path("/dev/shm")
    return str(shm) if shm.is_dir() else None
