"""What a policy costs per accepted sample: whole simulated runs through the real run loop, graph, nodes,
policy and ledger (bench/simulate.py), charged at a preset's GPU-seconds per call (bench/costs_<preset>.yaml,
written by bench/flops.py), at the preset's own clip size and episodes per clip.

First what ships: the full profile's policy with the preset, per card (H100, H200: which one the preset's weights
fit alone, and what a run pays where SageAttention2 is missing), and which preset fits which card. Then, on the
card the preset's figure is for, scenarios, each over the same episodes and pass rates:
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
same episodes (paired comparisons). The last line is the shipped policy's cost, naming the card:
`GPU-min per accepted: X (...)`.

    python -m bench.policy                       # the fast preset (1280x720x101): about 15 minutes here
    python -m bench.policy --setting paper --preset fast      # the same, saying which clip size it must be
    python -m bench.policy --preset fast_480p --episodes 400 --keyframe 0.6 --video 0.8
    python -m bench.policy --quick               # a few episodes per cell and a smaller grid: seconds
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from itertools import product
from pathlib import Path
from typing import Any

from agent.config import load_config
from bench.sim import CRITERION, PassRates
from bench.simulate import Outcome, full_policy, headline_card, preset_costs, simulate

PRESETS = ("fast", "fast_480p", "paper", "full")  # bench/stages.PRESETS (bench.stages imports torch)
SETTINGS = {"paper": "1280x720x101", "ours": "832x480x81"}  # --setting: Ditto-1M's clip size, and Wan2.1's 480p

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


def shape_conflicts(episodes: int, rates: PassRates, costs: dict[str, float], run: Callable[..., Outcome]) -> str:
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
        outcome = run(episodes, rates, costs, {"judge_attempts": 1, "lower_control_on": lower_on})
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


def shipped(preset: str, costs: dict[str, Any], outcome: Outcome, fallback: Outcome | None, seconds: float) -> str:
    """The shipped policy's cost with the preset on every card, and which card the preset's weights fit."""
    lines = "| card | the preset's weights on one card | GPU-min / accepted | GPU-days / 1M accepted "
    lines += (
        f"| {'PyTorch attention (no SageAttention2) | ' if fallback else ''}VLM roles at a vLLM server | wall s |\n"
    )
    lines += "| --- | --- | --- | --- |" + (" --- |" if fallback else "") + " --- | --- |\n"
    for card, left in costs["gb_left"].items():
        fit = f"fit, {left:.0f} GB left for activations" if left > 0 else f"{-left:.0f} GB over: do not fit"
        o = outcome.priced(costs["seconds_per_call"][card])
        cells = [card, fit, f"{o.minutes_per_accepted:.2f}", f"{o.days_per_million:,.0f}"]
        if fallback:
            cells.append(f"{fallback.priced(costs['without_sage'][card]).minutes_per_accepted:.2f}")
        cells.append(f"{outcome.priced(costs['vlm_at_endpoint'][card]).minutes_per_accepted:.2f}")
        lines += "| " + " | ".join(cells) + f" | {seconds:.0f} |\n"
    return lines


def fit_table() -> str:
    """Which preset's weights fit which card alone (bench/costs_<preset>.yaml; activations come on top)."""
    table = {p: preset_costs(p) for p in PRESETS}
    cards = list(next(iter(table.values()))["gb_left"])
    lines = "| preset | clip | " + " | ".join(cards) + " |\n|" + " --- |" * (2 + len(cards)) + "\n"
    for preset, costs in table.items():
        cells = [f"fits ({left:+.0f} GB)" if left > 0 else f"no ({left:+.0f} GB)" for left in costs["gb_left"].values()]
        lines += f"| {preset} | {costs['size']} | " + " | ".join(cells) + " |\n"
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--episodes", type=int, default=500, help="episodes per scenario (a)-(c)")
    parser.add_argument(
        "--grid-episodes", type=int, default=None, help="episodes per grid point of (d) (default: --episodes)"
    )
    parser.add_argument("--sensitivity-episodes", type=int, default=50, help="episodes per sensitivity cell")
    parser.add_argument("--retry-episodes", type=int, default=300, help="episodes per rewrite-rate cell")
    parser.add_argument("--preset", choices=PRESETS, default="fast", help="configs/<preset>.yaml ('full': none)")
    parser.add_argument(
        "--setting",
        choices=SETTINGS,
        help="the clip size the figures must be for ('paper': 1280x720x101, 'ours': 480x832x81); a preset that "
        "runs another is refused",
    )
    parser.add_argument("--quick", action="store_true", help="a few episodes per cell, one or two cells per table")
    defaults = PassRates()
    for name in ("keyframe", "video", "retry_keyframe", "retry_video", "judge_noise", "shape_conflict", "control_fix"):
        parser.add_argument(f"--{name.replace('_', '-')}", type=float, default=getattr(defaults, name))
    args = parser.parse_args()
    costs_file = preset_costs(args.preset)
    size = costs_file["size"]
    if args.setting and SETTINGS[args.setting] != size:
        runs_it = [p for p in PRESETS if preset_costs(p)["size"] == SETTINGS[args.setting]]
        parser.error(f"--setting {args.setting}: the {args.preset} preset runs {size}; at that size: {runs_it}")
    if args.quick:
        vars(args).update(QUICK)
    grid_of = QUICK_GRID if args.quick else FULL_GRID
    rates = PassRates(**{k: getattr(args, k) for k in vars(defaults)})
    card = headline_card(costs_file)
    costs = costs_file["seconds_per_call"][card]
    config = costs_file["config"]
    per_clip = load_config("full", Path(config) if config else None).episodes_per_clip
    run = partial(simulate, episodes_per_clip=per_clip)  # what the preset plans per source clip
    out = sys.stdout
    where = (
        f"{args.preset} preset ({config or 'the full profile alone'}, clips of {size}, {per_clip} episodes per clip)"
    )
    out.write(f"The shipped policy (the full profile's) with the {where}, {args.episodes} episodes:\n\n")
    started = time.perf_counter()
    ship = run(args.episodes, rates, costs, {})
    fallback = ship if "without_sage" in costs_file else None
    out.write(shipped(args.preset, costs_file, ship, fallback, time.perf_counter() - started))
    out.write("\nWhich preset's weights fit one card (bench.flops; one stage's activations come on top):\n\n")
    out.write(fit_table())
    out.write(f"\nOn one {card}: stage GPU-seconds per call {costs}\npass rates: {rates}\n\n")
    header = "| scenario | episodes | accepted | calls | GPU-min / accepted | GPU-days / 1M accepted | wall s |\n"
    out.write(header + "| --- | --- | --- | --- | --- | --- | --- |\n")
    # (judge_attempts, key-frame threshold) -> outcome and wall seconds at --episodes: the shipped policy, (b) and
    # (c) are cells of (d)'s grid, run once.
    profile_threshold = full_policy()["keyframe_pass"][CRITERION]
    runs: dict[tuple[int, float], tuple[Outcome, float]] = {
        (full_policy()["judge_attempts"], profile_threshold): (ship, time.perf_counter() - started)
    }
    for name, (policy, uncharged) in scenarios().items():
        t = time.perf_counter()
        key = (policy["judge_attempts"], profile_threshold)
        if not uncharged and key in runs:
            out.write(row(name, *runs[key]))
            continue
        outcome = run(args.episodes, rates, costs, policy, uncharged)
        out.write(row(name, outcome, time.perf_counter() - t))
        if not uncharged:
            runs[key] = outcome, time.perf_counter() - t
    grid_episodes = args.grid_episodes or args.episodes
    grid: dict[tuple[int, float], Outcome] = {}
    attempts_list, thresholds = grid_of["attempts"], grid_of["thresholds"]
    for attempts, threshold in product(attempts_list, thresholds):
        if grid_episodes == args.episodes and (attempts, threshold) in runs:
            grid[attempts, threshold] = runs[attempts, threshold][0]
            continue
        t = time.perf_counter()
        policy = {"judge_attempts": attempts, **keyframe_policy(threshold)}
        grid[attempts, threshold] = run(grid_episodes, rates, costs, policy)
        if grid_episodes == args.episodes:
            runs[attempts, threshold] = grid[attempts, threshold], time.perf_counter() - t
    best = min(grid, key=lambda k: grid[k].minutes_per_accepted)
    if best not in runs:  # a smaller grid: its best is run again on the scenarios' episodes
        t = time.perf_counter()
        policy = {"judge_attempts": best[0], **keyframe_policy(best[1])}
        runs[best] = run(args.episodes, rates, costs, policy), time.perf_counter() - t
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
            cells.append(" / ".join(f"{run(n, cell, costs, *p).minutes_per_accepted:.1f}" for p in named.values()))
        out.write(f"| {kf:g} | " + " | ".join(cells) + " |\n")
    out.write(
        f"\nsensitivity to the rewrite's key-frame pass rate, GPU-min per accepted, (b) / (c) "
        f"({args.retry_episodes} episodes each):"
        "\n\n" + table_head("retry_keyframe", grid_of["retry"])
    )
    b_policy, c_policy = (named[k] for k in list(named)[1:])
    # (b) never rewrites, so the rewrite's pass rate cannot change it: run once.
    b = run(args.retry_episodes, rates, costs, *b_policy).minutes_per_accepted
    cells = []
    for retry in grid_of["retry"]:
        c = run(args.retry_episodes, replace(rates, retry_keyframe=retry), costs, *c_policy)
        cells.append(f"{b:.2f} / {c.minutes_per_accepted:.2f}")
    out.write("| (b) / (c) | " + " | ".join(cells) + " |\n")
    out.write(shape_conflicts(args.retry_episodes, rates, costs, run))
    out.write(f"\nsimulated in {time.perf_counter() - started:.0f} s\n")
    recommended = f"judge_attempts {best[0]}, key-frame {CRITERION} >= {best[1]:g}"
    out.write(f"(d)'s grid would choose: {recommended}, {runs[best][0].minutes_per_accepted:.2f} GPU-min\n")
    left = costs_file["gb_left"][card]
    on = f"one {card}" if left > 0 else f"one {card}, whose memory its weights exceed by {-left:.0f} GB"
    what = f"the shipped policy; {args.preset} preset, {size}, {on}"
    out.write(f"GPU-min per accepted: {ship.minutes_per_accepted:.2f} ({what})\n")


if __name__ == "__main__":
    main()
