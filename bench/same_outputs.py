"""Whether two runs made the same decisions, calls and dataset: what a change that should not change behaviour
(a refactoring, a schema migration) is checked with. Run the same command on the code before and after it,
each into its own --out, then:

    python -m bench.same_outputs OUT_A OUT_B

It prints every difference and exits 1 on any, or prints what it compared and 'same'. Compared, for the latest
run in each folder, episode by episode (by its index in the run):
- the episode: status, reason, category and the instruction it ended with;
- each tool call site (node, attempt, tool): its cache key (tool, version, backend, settings, input, templates;
  its input where that names the run) and whether it ran, and was charged, or was reused;
- each file of the dataset, byte for byte, with the run's id written as RUN, and metadata.csv's rows in any
  order (episodes in flight side by side are accepted in either order).
Device-seconds are measured (CPU time on the cpu profile) and differ between two runs of the same code: the
totals per tool are printed side by side, not compared."""

from __future__ import annotations

import argparse
import hashlib
import sqlite3
import sys
from pathlib import Path
from typing import Any


def episodes(db: sqlite3.Connection, run: str) -> dict[str, tuple[Any, ...]]:
    rows = db.execute(
        'select id, "index", status, reason, coalesce(planned_category, category) from episode where run_id = ?',
        (run,),
    ).fetchall()
    ended_with = dict(  # the last plan of each episode: the instruction it ended with
        db.execute("select episode_id, output_json from toolcall where tool = 'plan_instruction' order by id")
    )
    return {f"{i:05d}": (status, reason, category, ended_with.get(eid)) for eid, i, status, reason, category in rows}


def calls(db: sqlite3.Connection, run: str) -> tuple[dict[tuple[Any, ...], tuple[str, bool]], dict[str, float]]:
    """(call site -> (cache key, ran), device-seconds per tool) of the run's episodes and its other calls."""
    index = {eid: f"{i:05d}" for eid, i in db.execute('select id, "index" from episode where run_id = ?', (run,))}
    sites, seconds = {}, {}
    query = (
        "select episode_id, training_id, node, attempt, tool, call_key, input_json, reused_call_id, device_seconds "
        "from toolcall"
    )
    for episode, training, node, attempt, tool, key, inp, reused, device_s in db.execute(query):
        if (episode is not None and episode not in index) or (training is not None and run not in training):
            continue  # another run's
        where = index.get(episode) or (training and training.replace(run, "RUN"))
        # A training round's input names the run's samples: its key differs with the run's id, its input not.
        what = inp.replace(run, "RUN") if run in inp else key
        sites[(where, node.replace(run, "RUN"), attempt, tool)] = (what, reused is None)
        if reused is None:
            seconds[tool] = seconds.get(tool, 0.0) + device_s
    return sites, seconds


def dataset(out: Path, run: str) -> dict[str, str]:
    """Each file of the dataset (the run's id as RUN) -> sha256 of its bytes (the run's id as RUN in text)."""
    folder, found = out / "dataset", {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        data = path.read_bytes()
        if path.suffix in (".json", ".csv"):
            data = data.replace(run.encode(), b"RUN")
        if path.name == "metadata.csv":
            header, *rows = data.splitlines()
            data = b"\n".join([header, *sorted(rows)])
        found[str(path.relative_to(folder)).replace(run, "RUN")] = hashlib.sha256(data).hexdigest()
    return found


def compare(name: str, a: dict[Any, Any], b: dict[Any, Any]) -> list[str]:
    keys = sorted(a.keys() | b.keys(), key=str)
    return [f"{name} {k}: {a.get(k, '(none)')} != {b.get(k, '(none)')}" for k in keys if a.get(k) != b.get(k)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("a", type=Path)
    parser.add_argument("b", type=Path)
    args = parser.parse_args()
    found = []
    for out in (args.a, args.b):
        db = sqlite3.connect(out / "ditto.db")
        run = db.execute("select id from run order by created_at desc limit 1").fetchone()[0]
        found.append((run, episodes(db, run), *calls(db, run), dataset(out, run)))
    (run_a, episodes_a, calls_a, seconds_a, files_a), (run_b, episodes_b, calls_b, seconds_b, files_b) = found
    differences = compare("episode", episodes_a, episodes_b) + compare("call", calls_a, calls_b)
    differences += compare("dataset file", files_a, files_b)
    for tool in sorted(seconds_a.keys() | seconds_b.keys()):
        sys.stdout.write(f"device-s {tool}: {seconds_a.get(tool, 0.0):.3f} {seconds_b.get(tool, 0.0):.3f}\n")
    for line in differences:
        sys.stdout.write(line + "\n")
    ran = sum(ran for _, ran in calls_a.values())
    sys.stdout.write(
        f"{run_a} vs {run_b}: {len(episodes_a)} episodes, {len(calls_a)} calls ({ran} ran), {len(files_a)} dataset "
        f"files: {'same' if not differences else f'{len(differences)} differences'}\n"
    )
    sys.exit(1 if differences else 0)


if __name__ == "__main__":
    main()
