"""What a policy costs per accepted sample: whole simulated runs through the real run loop, graph, nodes,
policy and ledger (bench/simulate.py), charged at bench/costs.yaml's GPU-seconds per call (bench/flops.py).

Scenarios, each over the same episodes and pass rates:
  (a) the paper's order: no key-frame gate (its judge is neither consulted nor charged), the video judge
      only at the end, no retries;
  (b) with the key-frame gate, no retries;
  (c) gate plus rewrites from the judge's reasons, up to the full profile's max_attempts;
  (d) the best max_attempts and key-frame threshold on a grid;
then a sensitivity table of (a) and (c) over the pass rates.

    python -m bench.policy                       # ~10,000 episodes in all
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
ATTEMPTS = (1, 2, 3, 4)
KEYFRAME_THRESHOLDS = (5.0, 6.0, 7.0, 8.0)
SENSITIVITY = {"keyframe": (0.5, 0.7, 0.9), "video": (0.5, 0.75, 0.9)}


def keyframe_policy(threshold: float) -> dict[str, Any]:
    return {"keyframe_pass": {**full_policy()["keyframe_pass"], CRITERION: threshold}}


def scenarios(default_attempts: int) -> dict[str, tuple[dict[str, Any], tuple[str, ...]]]:
    """name -> (policy overrides, tools not charged)."""
    return {
        "(a) paper: no gate, judge at the end, no retries": ({**GATE_OFF, "max_attempts": 1}, ("judge_keyframe",)),
        "(b) key-frame gate, no retries": ({"max_attempts": 1}, ()),
        f"(c) gate + rewrites, max_attempts {default_attempts}": ({}, ()),
    }


def row(name: str, o: Outcome, seconds: float) -> str:
    calls = ", ".join(f"{t} {n}" for t, n in sorted(o.calls.items()) if t in ("edit_keyframe", "propagate"))
    return (
        f"| {name} | {o.episodes} | {o.accepted} ({o.accepted / max(1, o.episodes):.0%}) | {calls} "
        f"| {o.minutes_per_accepted:.2f} | {o.days_per_million:,.0f} | {seconds:.0f} |\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--episodes", type=int, default=1000, help="episodes per scenario (a)-(c)")
    parser.add_argument("--grid-episodes", type=int, default=300, help="episodes per grid point of (d)")
    parser.add_argument("--sensitivity-episodes", type=int, default=150, help="episodes per sensitivity cell")
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
    default_attempts = full_policy().get("max_attempts", 3)
    for name, (policy, uncharged) in scenarios(default_attempts).items():
        t = time.perf_counter()
        outcome = simulate(args.episodes, rates, costs, policy, uncharged)
        out.write(row(name, outcome, time.perf_counter() - t))
    grid: dict[tuple[int, float], Outcome] = {}
    for attempts, threshold in product(ATTEMPTS, KEYFRAME_THRESHOLDS):
        policy = {"max_attempts": attempts, **keyframe_policy(threshold)}
        grid[attempts, threshold] = simulate(args.grid_episodes, rates, costs, policy)
    best = min(grid, key=lambda k: grid[k].minutes_per_accepted)
    t = time.perf_counter()
    confirmed = simulate(args.episodes, rates, costs, {"max_attempts": best[0], **keyframe_policy(best[1])})
    out.write(
        row(
            f"(d) best: max_attempts {best[0]}, key-frame {CRITERION} >= {best[1]:g}",
            confirmed,
            time.perf_counter() - t,
        )
    )
    out.write(
        f"\n(d) grid, GPU-min per accepted ({args.grid_episodes} episodes each; rows max_attempts, "
        f"columns key-frame {CRITERION} threshold):\n\n| max_attempts | "
        + " | ".join(f"{x:g}" for x in KEYFRAME_THRESHOLDS)
        + " |\n|"
        + " --- |" * (1 + len(KEYFRAME_THRESHOLDS))
        + "\n"
    )
    for attempts in ATTEMPTS:
        cells = " | ".join(f"{grid[attempts, x].minutes_per_accepted:.2f}" for x in KEYFRAME_THRESHOLDS)
        out.write(f"| {attempts} | {cells} |\n")
    out.write(
        "\nsensitivity, GPU-min per accepted: (a) paper order / (c) gate + rewrites "
        f"({args.sensitivity_episodes} episodes each; rows key-frame pass rate, columns video pass rate):\n\n"
        "| key-frame \\ video | "
        + " | ".join(f"{v:g}" for v in SENSITIVITY["video"])
        + " |\n|"
        + " --- |" * (1 + len(SENSITIVITY["video"]))
        + "\n"
    )
    paper, gated = scenarios(default_attempts)["(a) paper: no gate, judge at the end, no retries"], ({}, ())
    for kf in SENSITIVITY["keyframe"]:
        cells = []
        for video in SENSITIVITY["video"]:
            cell = replace(rates, keyframe=kf, video=video)
            a = simulate(args.sensitivity_episodes, cell, costs, *paper)
            c = simulate(args.sensitivity_episodes, cell, costs, *gated)
            cells.append(f"{a.minutes_per_accepted:.1f} / {c.minutes_per_accepted:.1f}")
        out.write(f"| {kf:g} | " + " | ".join(cells) + " |\n")
    out.write(f"\nsimulated in {time.perf_counter() - started:.0f} s\n")


if __name__ == "__main__":
    main()
