"""What a policy costs per accepted sample: whole simulated runs through the real run loop, graph, nodes,
policy and ledger (bench/simulate.py), charged at bench/costs.yaml's GPU-seconds per call (bench/flops.py).

Scenarios, each over the same episodes and pass rates:
  (a) the paper's order: no key-frame gate (its judge is neither consulted nor charged), the video judge
      only at the end, no retries;
  (b) with the key-frame gate, no retries;
  (c) gate plus rewrites from the judge's reasons, 3 attempts;
  (d) the best attempts-after-rejection (policy.judge_attempts) and key-frame threshold on a grid;
then sensitivity tables over the pass rates. max_attempts stays the full profile's in every scenario, so
every scenario plans the same instructions for the same episodes (paired comparisons).

    python -m bench.policy                       # 7,550 episodes in all: about 6 minutes here
    python -m bench.policy --episodes 400 --setting paper --keyframe 0.6 --video 0.8
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


def keyframe_policy(threshold: float) -> dict[str, Any]:
    return {"keyframe_pass": {**full_policy()["keyframe_pass"], CRITERION: threshold}}


def scenarios() -> dict[str, tuple[dict[str, Any], tuple[str, ...]]]:
    """name -> (policy overrides, tools not charged)."""
    return {
        "(a) paper: no gate, judge at the end, no retries": ({**GATE_OFF, "judge_attempts": 1}, ("judge_keyframe",)),
        "(b) key-frame gate, no retries": ({"judge_attempts": 1}, ()),
        "(c) gate + rewrites, 3 attempts": ({"judge_attempts": 3}, ()),
    }


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
    parser.add_argument("--grid-episodes", type=int, default=150, help="episodes per grid point of (d)")
    parser.add_argument("--sensitivity-episodes", type=int, default=50, help="episodes per sensitivity cell")
    parser.add_argument("--retry-episodes", type=int, default=300, help="episodes per rewrite-rate cell")
    parser.add_argument("--setting", choices=["ours", "paper"], default="ours", help="stage costs at which size")
    defaults = PassRates()
    for name in ("keyframe", "video", "retry_keyframe", "retry_video", "judge_noise"):
        parser.add_argument(f"--{name.replace('_', '-')}", type=float, default=getattr(defaults, name))
    args = parser.parse_args()
    rates = PassRates(**{k: getattr(args, k) for k in vars(defaults)})
    costs = stage_costs(args.setting)
    out = sys.stdout
    out.write(f"stage GPU-seconds per call ({args.setting}): {costs}\npass rates: {rates}\n\n")
    header = "| scenario | episodes | accepted | calls | GPU-min / accepted | GPU-days / 1M accepted | wall s |\n"
    out.write(header + "| --- | --- | --- | --- | --- | --- | --- |\n")
    started = time.perf_counter()
    for name, (policy, uncharged) in scenarios().items():
        t = time.perf_counter()
        out.write(row(name, simulate(args.episodes, rates, costs, policy, uncharged), time.perf_counter() - t))
    grid: dict[tuple[int, float], Outcome] = {}
    for attempts, threshold in product(ATTEMPTS, KEYFRAME_THRESHOLDS):
        policy = {"judge_attempts": attempts, **keyframe_policy(threshold)}
        grid[attempts, threshold] = simulate(args.grid_episodes, rates, costs, policy)
    best = min(grid, key=lambda k: grid[k].minutes_per_accepted)
    t = time.perf_counter()
    confirmed = simulate(args.episodes, rates, costs, {"judge_attempts": best[0], **keyframe_policy(best[1])})
    name = f"(d) best: judge_attempts {best[0]}, key-frame {CRITERION} >= {best[1]:g}"
    out.write(row(name, confirmed, time.perf_counter() - t))
    out.write(
        f"\n(d) grid, GPU-min per accepted ({args.grid_episodes} episodes each; rows judge_attempts, columns "
        f"key-frame {CRITERION} threshold):\n\n" + table_head("judge_attempts", KEYFRAME_THRESHOLDS)
    )
    for attempts in ATTEMPTS:
        cells = " | ".join(f"{grid[attempts, x].minutes_per_accepted:.2f}" for x in KEYFRAME_THRESHOLDS)
        out.write(f"| {attempts} | {cells} |\n")
    n, named = args.sensitivity_episodes, scenarios()
    out.write(
        f"\nsensitivity, GPU-min per accepted, (a) / (b) / (c) ({n} episodes each; rows first key-frame "
        "pass rate, columns video pass rate):\n\n" + table_head("key-frame \\ video", SENSITIVITY["video"])
    )
    for kf in SENSITIVITY["keyframe"]:
        cells = []
        for video in SENSITIVITY["video"]:
            cell = replace(rates, keyframe=kf, video=video)
            cells.append(" / ".join(f"{simulate(n, cell, costs, *p).minutes_per_accepted:.1f}" for p in named.values()))
        out.write(f"| {kf:g} | " + " | ".join(cells) + " |\n")
    out.write(
        f"\nsensitivity to the rewrite's key-frame pass rate, GPU-min per accepted, (b) / (c) "
        f"({args.retry_episodes} episodes each):"
        "\n\n" + table_head("retry_keyframe", SENSITIVITY["retry_keyframe"])
    )
    cells = []
    for retry in SENSITIVITY["retry_keyframe"]:
        cell = replace(rates, retry_keyframe=retry)
        b, c = (simulate(args.retry_episodes, cell, costs, *named[k]) for k in list(named)[1:])
        cells.append(f"{b.minutes_per_accepted:.2f} / {c.minutes_per_accepted:.2f}")
    out.write("| (b) / (c) | " + " | ".join(cells) + " |\n")
    out.write(f"\nsimulated in {time.perf_counter() - started:.0f} s\n")


if __name__ == "__main__":
    main()
