"""What a policy costs per accepted sample: whole simulated runs through the real run loop, graph, nodes,
policy and ledger (bench/simulate.py), charged at a preset's GPU-seconds per call (bench/costs_<preset>.yaml,
written by bench/flops.py).

Scenarios, each over the same episodes and pass rates:
  (a) the paper's order: no key-frame gate (its judge is neither consulted nor charged), the video judge
      only at the end, no retries;
  (b) with the key-frame gate, no retries;
  (c) gate plus rewrites from the judge's reasons, 3 attempts;
  (d) the best attempts-after-rejection (policy.judge_attempts) and key-frame threshold on a grid over the
      same episodes ((b) and (c) are two of its cells);
then sensitivity tables over the pass rates, and
  (e) videos whose edit fights the depth control (--shape-conflict of the good key frames): discarded, or made
      again from the same key frame at a lower control strength (the full profile's lower_control_on).
max_attempts stays the full profile's in every scenario, so every scenario plans the same instructions for the
same episodes (paired comparisons). The last line is the cost of the policy (d) recommends:
`GPU-min per accepted: X`.

    python -m bench.policy                       # the paper preset at 480p: about 3 minutes
    python -m bench.policy --setting paper --preset fast
    python -m bench.policy --episodes 400 --setting paper --keyframe 0.6 --video 0.8
    python -m bench.policy --quick               # a few episodes per cell and a smaller grid: seconds
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from itertools import product
from typing import Any

from bench.sim import CRITERION, PassRates
from bench.simulate import Outcome, full_policy, simulate, stage_costs

GATE_OFF: dict[str, Any] = {"keyframe_pass": {}}  # no criterion to fail: every key frame goes on to video
ATTEMPTS = (1, 2, 3)
KEYFRAME_THRESHOLDS = (5.0, 6.0, 7.0, 8.0)
SENSITIVITY = {"keyframe": (0.5, 0.7, 0.9), "video": (0.5, 0.75, 0.9), "retry_keyframe": (0.3, 0.5, 0.7, 0.9)}
# --quick: every table, one or two cells each, a few episodes per cell (the tests run it)
QUICK = {"episodes": 6, "sensitivity_episodes": 4, "retry_episodes": 4}
FULL_GRID = {
    "attempts": ATTEMPTS,
    "thresholds": KEYFRAME_THRESHOLDS,
    "keyframe": SENSITIVITY["keyframe"],
    "video": SENSITIVITY["video"],
    "retry": SENSITIVITY["retry_keyframe"],
}
QUICK_GRID = {"attempts": (1, 3), "thresholds": (7.0,), "keyframe": (0.7,), "video": (0.75,), "retry": (0.5,)}


def keyframe_policy(threshold: float) -> dict[str, Any]:
    return {"keyframe_pass": {**full_policy()["keyframe_pass"], CRITERION: threshold}}


def scenarios() -> dict[str, tuple[dict[str, Any], tuple[str, ...]]]:
    """name -> (policy overrides, tools not charged)."""
    return {
        "(a) paper: no gate, judge at the end, no retries": ({**GATE_OFF, "judge_attempts": 1}, ("judge_keyframe",)),
        "(b) key-frame gate, no retries": ({"judge_attempts": 1}, ()),
        "(c) gate + rewrites, 3 attempts": ({"judge_attempts": 3}, ()),
    }


SHAPE_CONFLICT = 0.2  # (e)'s share of good key frames whose video fails on shape, when --shape-conflict is 0


def shape_conflicts(episodes: int, rates: PassRates, costs: dict[str, float]) -> str:
    """(e): the same episodes under (b), a shape failure discarded or retried at a lower control strength."""
    rates = replace(rates, shape_conflict=rates.shape_conflict or SHAPE_CONFLICT)
    lines = (
        f"\n(e) {rates.shape_conflict:.0%} of good key frames fight the depth control ({episodes} episodes each):\n\n"
    )
    lines += (
        "| on a shape failure | episodes | accepted | calls | GPU-min / accepted | GPU-days / 1M accepted | wall s |\n"
    )
    lines += "| --- | --- | --- | --- | --- | --- | --- |\n"
    for name, lower_on in (("discard", []), ("lower the control strength", ["shape_fidelity"])):
        t = time.perf_counter()
        outcome = simulate(episodes, rates, costs, {"judge_attempts": 1, "lower_control_on": lower_on})
        lines += row(name, outcome, time.perf_counter() - t)
    return lines


def table_head(first: str, columns: tuple[float, ...]) -> str:
    return f"| {first} | " + " | ".join(f"{x:g}" for x in columns) + " |\n|" + " --- |" * (1 + len(columns)) + "\n"


def row(name: str, o: Outcome, seconds: float) -> str:
    calls = ", ".join(f"{t} {n}" for t, n in sorted(o.calls.items()) if t in ("edit_keyframe", "propagate"))
    return (
        f"| {name} | {o.episodes} | {o.accepted} ({o.accepted / max(1, o.episodes):.0%}) | {calls} "
        f"| {o.minutes_per_accepted:.2f} | {o.days_per_million:,.0f} | {seconds:.0f} |\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--episodes", type=int, default=500, help="episodes per scenario (a)-(c)")
    parser.add_argument(
        "--grid-episodes", type=int, default=None, help="episodes per grid point of (d) (default: --episodes)"
    )
    parser.add_argument("--sensitivity-episodes", type=int, default=50, help="episodes per sensitivity cell")
    parser.add_argument("--retry-episodes", type=int, default=300, help="episodes per rewrite-rate cell")
    parser.add_argument("--setting", choices=["ours", "paper"], default="ours", help="stage costs at which size")
    parser.add_argument("--preset", choices=["paper", "fast"], default="paper", help="stage costs of which preset")
    parser.add_argument("--quick", action="store_true", help="a few episodes per cell, one or two cells per table")
    defaults = PassRates()
    for name in ("keyframe", "video", "retry_keyframe", "retry_video", "judge_noise", "shape_conflict", "control_fix"):
        parser.add_argument(f"--{name.replace('_', '-')}", type=float, default=getattr(defaults, name))
    args = parser.parse_args()
    if args.quick:
        vars(args).update(QUICK)
    grid_of = QUICK_GRID if args.quick else FULL_GRID
    rates = PassRates(**{k: getattr(args, k) for k in vars(defaults)})
    costs = stage_costs(args.setting, args.preset)
    out = sys.stdout
    out.write(
        f"stage GPU-seconds per call ({args.preset} preset, {args.setting} size): {costs}\npass rates: {rates}\n\n"
    )
    header = "| scenario | episodes | accepted | calls | GPU-min / accepted | GPU-days / 1M accepted | wall s |\n"
    out.write(header + "| --- | --- | --- | --- | --- | --- | --- |\n")
    started = time.perf_counter()
    # (judge_attempts, key-frame threshold) -> outcome and wall seconds at --episodes: (b) and (c) are cells
    # of (d)'s grid, run once.
    runs: dict[tuple[int, float], tuple[Outcome, float]] = {}
    profile_threshold = full_policy()["keyframe_pass"][CRITERION]
    for name, (policy, uncharged) in scenarios().items():
        t = time.perf_counter()
        outcome = simulate(args.episodes, rates, costs, policy, uncharged)
        out.write(row(name, outcome, time.perf_counter() - t))
        if not uncharged:
            runs[policy["judge_attempts"], profile_threshold] = outcome, time.perf_counter() - t
    grid_episodes = args.grid_episodes or args.episodes
    grid: dict[tuple[int, float], Outcome] = {}
    attempts_list, thresholds = grid_of["attempts"], grid_of["thresholds"]
    for attempts, threshold in product(attempts_list, thresholds):
        if grid_episodes == args.episodes and (attempts, threshold) in runs:
            grid[attempts, threshold] = runs[attempts, threshold][0]
            continue
        t = time.perf_counter()
        policy = {"judge_attempts": attempts, **keyframe_policy(threshold)}
        grid[attempts, threshold] = simulate(grid_episodes, rates, costs, policy)
        if grid_episodes == args.episodes:
            runs[attempts, threshold] = grid[attempts, threshold], time.perf_counter() - t
    best = min(grid, key=lambda k: grid[k].minutes_per_accepted)
    if best not in runs:  # a smaller grid: its best is run again on the scenarios' episodes
        t = time.perf_counter()
        policy = {"judge_attempts": best[0], **keyframe_policy(best[1])}
        runs[best] = simulate(args.episodes, rates, costs, policy), time.perf_counter() - t
    name = f"(d) best: judge_attempts {best[0]}, key-frame {CRITERION} >= {best[1]:g}"
    out.write(row(name, *runs[best]))
    out.write(
        f"\n(d) grid, GPU-min per accepted ({grid_episodes} episodes each; rows judge_attempts, columns "
        f"key-frame {CRITERION} threshold):\n\n" + table_head("judge_attempts", thresholds)
    )
    for attempts in attempts_list:
        cells = " | ".join(f"{grid[attempts, x].minutes_per_accepted:.2f}" for x in thresholds)
        out.write(f"| {attempts} | {cells} |\n")
    n, named = args.sensitivity_episodes, scenarios()
    out.write(
        f"\nsensitivity, GPU-min per accepted, (a) / (b) / (c) ({n} episodes each; rows first key-frame "
        "pass rate, columns video pass rate):\n\n" + table_head("key-frame \\ video", grid_of["video"])
    )
    for kf in grid_of["keyframe"]:
        cells = []
        for video in grid_of["video"]:
            cell = replace(rates, keyframe=kf, video=video)
            cells.append(" / ".join(f"{simulate(n, cell, costs, *p).minutes_per_accepted:.1f}" for p in named.values()))
        out.write(f"| {kf:g} | " + " | ".join(cells) + " |\n")
    out.write(
        f"\nsensitivity to the rewrite's key-frame pass rate, GPU-min per accepted, (b) / (c) "
        f"({args.retry_episodes} episodes each):"
        "\n\n" + table_head("retry_keyframe", grid_of["retry"])
    )
    b_policy, c_policy = (named[k] for k in list(named)[1:])
    # (b) never rewrites, so the rewrite's pass rate cannot change it: run once.
    b = simulate(args.retry_episodes, rates, costs, *b_policy).minutes_per_accepted
    cells = []
    for retry in grid_of["retry"]:
        c = simulate(args.retry_episodes, replace(rates, retry_keyframe=retry), costs, *c_policy)
        cells.append(f"{b:.2f} / {c.minutes_per_accepted:.2f}")
    out.write("| (b) / (c) | " + " | ".join(cells) + " |\n")
    out.write(shape_conflicts(args.retry_episodes, rates, costs))
    out.write(f"\nsimulated in {time.perf_counter() - started:.0f} s\n")
    recommended = f"judge_attempts {best[0]}, key-frame {CRITERION} >= {best[1]:g}"
    out.write(f"recommended ({args.preset} preset, {args.setting} size): {recommended}\n")
    out.write(f"GPU-min per accepted: {runs[best][0].minutes_per_accepted:.2f}\n")


if __name__ == "__main__":
    main()
