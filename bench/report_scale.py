"""How the report holds up at scale: clone the episodes of a finished cpu run until the run has N of them
(rows only; clones share the real videos), then time `report` and the page's first render and a filter in
headless Chromium.

    python -m bench.report_scale --episodes 10000
    python -m bench.report_scale --episodes 60 --quick    # CI's size (tests/bench/test_report_scale.py)
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

from sqlmodel import Session, select

from bench.faults import finish, start, write_config
from store.engine import open_engine
from store.report import write_report
from store.tables import Episode, NodeEvent, Run, ToolCall


def clone_episodes(out: Path, target: int) -> str:
    """Copies of the run's episodes, events and calls under new ids, until the run has `target` episodes."""
    engine = open_engine(f"sqlite:///{out / 'ditto.db'}")
    with Session(engine, expire_on_commit=False) as s:
        run = s.exec(select(Run)).one()
        originals = list(s.exec(select(Episode).where(Episode.run_id == run.id)).all())
        events = {e.id: list(s.exec(select(NodeEvent).where(NodeEvent.episode_id == e.id)).all()) for e in originals}
        calls = {e.id: list(s.exec(select(ToolCall).where(ToolCall.episode_id == e.id)).all()) for e in originals}
        for n in range(len(originals), target):
            source = originals[n % len(originals)]
            clone = Episode(**source.model_dump(exclude={"id", "index"}), id=f"{run.id}:{n:05d}", index=n)
            s.add(clone)
            for ev in events[source.id]:
                s.add(NodeEvent(**ev.model_dump(exclude={"id", "episode_id"}), episode_id=clone.id))
            for c in calls[source.id]:
                s.add(
                    ToolCall(
                        **c.model_dump(exclude={"id", "episode_id", "call_key"}), call_key="x", episode_id=clone.id
                    )
                )
            if n % 500 == 0:
                s.commit()
        s.commit()
        return run.id


def browse(index: Path) -> dict[str, float]:
    from playwright.sync_api import sync_playwright

    args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=args)
        page = browser.new_page()
        t0 = time.perf_counter()
        page.goto(index.as_uri())
        page.wait_for_function("document.body.dataset.renders === '1'", timeout=120_000)
        first = time.perf_counter() - t0
        t0 = time.perf_counter()
        # the first status the run has (a short run may have no discarded episode)
        page.select_option("#f-status", index=1)
        page.wait_for_function("document.body.dataset.renders === '2'", timeout=120_000)
        filtered = time.perf_counter() - t0
        heap = page.evaluate("performance.memory ? performance.memory.usedJSHeapSize / 2**20 : -1")
        browser.close()
    return {"first render s": first, "filter s": filtered, "JS heap MiB": heap}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--episodes", type=int, default=10_000)
    parser.add_argument("--quick", action="store_true", help="CI's size: a run of 2 episodes a clip to clone, not 6")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        out = folder / "out"
        finish(start(out, write_config(folder, **({"episodes_per_clip": 2} if args.quick else {}))))
        run_id = clone_episodes(out, args.episodes)
        t0 = time.perf_counter()
        index = write_report(open_engine(f"sqlite:///{out / 'ditto.db'}"), out, run_id, out / "report")
        took = time.perf_counter() - t0
        size = sum(p.stat().st_size for p in (out / "report").rglob("*") if p.is_file()) / 2**20
        figures = {"episodes": index.episodes, "report written s": took, "report folder MiB": size}
        if shutil.which("chromium") or Path("/usr/bin/chromium").is_file():
            figures |= browse(index.path)
        for name, value in figures.items():
            sys.stdout.write(f"{name:>20}: {value:.2f}\n" if isinstance(value, float) else f"{name:>20}: {value}\n")


if __name__ == "__main__":
    main()
