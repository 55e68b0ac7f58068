"""FLOPs per call of every neural stage of each preset (configs/paper.yaml, configs/fast.yaml) at real size,
counted without a GPU: each real diffusers/transformers class is built from its published config
(bench/flops_models.yaml) on PyTorch's meta device and run once under torch.utils.flop_counter.FlopCounterMode.
Nothing is allocated. Then the GPU memory the preset's weights take resident (bench/resident.py).

What is counted, per call of a stage (bench/stages.py reads each stage's settings from the preset's config):
- every transformer/denoiser forward, exactly, at the stage's token counts (steps x CFG passes: diffusers runs
  a second, unconditional pass only at a guidance scale above 1);
- the VAE encodes and decode the pipeline does, and its text encoder once per prompt (twice under CFG);
- Qwen2.5-VL: vision tower + language-model prefill, then the answer's decode. Decode at batch 1 reads every
  weight once per token, so its floor is memory bandwidth, not FLOPs: `decode GB` is added at the HBM rate.
Not counted: schedulers, pre/post-processing on the CPU, host-device copies, elementwise glue the counter
ignores. FP8 changes the peak, not the FLOPs: the FLOPs of the linears a stage runs in FP8 (its
`quantization: fp8`; models/pipelines.fp8_linears) are timed at the GPU's FP8 dense peak, everything else
(attention, convolutions, norms, text encoders) at the bf16 dense peak. The lowest GPU-seconds are those
times (+ decode bytes / HBM bandwidth); the MFU column divides them by --mfu, the same for both kinds.
`bench/costs_<preset>.yaml` gets the MFU figures, per tool of the graph, for bench/policy.py.

    python -m bench.flops                          # both presets, both sizes: ~4 minutes here
    python -m bench.flops --preset fast --mfu 0.3 --costs-dir /tmp
    python -m bench.flops --quick                  # tiny clips, no alternatives, nothing written: seconds
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import yaml

from bench.meta_flops import MODELS
from bench.resident import GPUS, parts, resident_gb
from bench.stages import PRESETS, Stage, editto_stages, stages

BENCH = Path(__file__).parent


def lowest_seconds(stage: Stage, device: str) -> float:
    """bf16 FLOPs at the bf16 dense peak, FP8 FLOPs at the FP8 dense peak, plus the decode's weight reads at
    full HBM bandwidth."""
    spec = MODELS["devices"][device]
    flops = stage.flops.total - stage.flops.fp8
    compute = flops / (spec["bf16_tflops"] * 1e12) + stage.flops.fp8 / (spec["fp8_tflops"] * 1e12)
    return compute + stage.decode_bytes / (spec["hbm_tb_s"] * 1e12)


def costs_path(directory: Path, preset: str) -> Path:
    return directory / f"costs_{preset}.yaml"


def write_costs(path: Path, preset: str, table: list[Stage], device: str, mfu: float) -> None:
    """Seconds per call of each graph tool (the preset's choice of each stage), per setting, at the MFU."""
    per_tool: dict[str, dict[str, float]] = {}
    for s in table:
        if s.default:
            per_tool.setdefault(s.setting, {})[s.tool] = round(lowest_seconds(s, device) / mfu, 2)
    for setting in per_tool.values():  # Editto's rows are at its own size, whatever the setting
        setting.update({s.tool: round(lowest_seconds(s, device) / mfu, 2) for s in editto_stages() if s.default})
    header = (
        f"# Written by `python -m bench.flops --mfu {mfu}`: GPU-seconds per call of each tool of the `{preset}`\n"
        f"# preset (configs/{preset}.yaml) on one {device}, FLOP bound / MFU {mfu} (FP8 matmuls at the FP8 peak).\n"
        "# 'ours' is 480x832, 81 frames; 'paper' is 1280x720, 101 frames (Editto's rows are at 480x832x73 in\n"
        "# both). Tools absent here hold no GPU (ingest, the planner).\n"
    )
    body = {"preset": preset, "device": device, "mfu": mfu, "seconds_per_call": per_tool}
    path.write_text(header + yaml.safe_dump(body, sort_keys=False))


def print_table(preset: str, table: list[Stage], mfu: float) -> None:
    devices = list(MODELS["devices"])
    out = sys.stdout
    out.write(
        f"\n`{preset}` preset (configs/{preset}.yaml):\n\n| setting | tool | stage | TFLOPs/call | of them FP8 "
        f"| decode GB | {' | '.join(f'{d} lowest s' for d in devices)} | H100 s at MFU {mfu:g} |\n"
        f"|{' --- |' * (7 + len(devices))}\n"
    )
    for s in table:
        lowest = " | ".join(f"{lowest_seconds(s, d):.2f}" for d in devices)
        mark = "" if s.default else " (alt.)"
        share = f"{s.flops.fp8 / s.flops.total:.0%}" if s.flops.fp8 else "-"
        out.write(
            f"| {s.setting} | {s.tool}{mark} | {s.name} | {s.flops.total / 1e12:,.1f} | {share} "
            f"| {s.decode_bytes / 1e9:,.0f} | {lowest} | {lowest_seconds(s, devices[0]) / mfu:,.1f} |\n"
        )


def print_resident(preset: str) -> None:
    out = sys.stdout
    out.write(f"\n`{preset}` weights on the GPU (GB; offloaded ones only while they run):\n\n")
    out.write("| step | model | GB | where |\n| --- | --- | --- | --- |\n")
    rows = parts(preset)
    for p in rows:
        out.write(f"| {p.step} | {p.model} | {p.gb:.1f} | {'host (cpu_offload)' if p.offloaded else 'GPU'} |\n")
    total = resident_gb(preset)
    largest = max((p.gb for p in rows if p.offloaded), default=0.0)
    fits = ", ".join(f"{name}: {(cap / 1e9 - total - largest):+.0f} GB left" for name, cap in GPUS.items())
    out.write(f"| all | resident{' + the largest offloaded' if largest else ''} | {total + largest:.1f} | {fits} |\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=PRESETS, action="append", help="default: every preset")
    parser.add_argument("--mfu", type=float, default=0.4, help="assumed model FLOPs utilisation (0-1]")
    parser.add_argument("--costs-dir", type=Path, default=BENCH, help="where costs_<preset>.yaml are written")
    parser.add_argument(
        "--quick", action="store_true", help="tiny clips, no alternatives, no Editto rows, no costs written"
    )
    args = parser.parse_args()
    started = time.perf_counter()
    device = next(iter(MODELS["devices"]))
    for preset in args.preset or PRESETS:
        if args.quick:
            table = stages(preset, ("tiny",), alternatives=False)
        else:
            table = stages(preset) + (editto_stages() if preset == "paper" else [])
        print_table(preset, table, args.mfu)
        print_resident(preset)
        if not args.quick:
            write_costs(costs_path(args.costs_dir, preset), preset, table, device, args.mfu)
    written = "nothing written (--quick)" if args.quick else f"wrote costs_<preset>.yaml in {args.costs_dir}"
    sys.stdout.write(f"\ncounted in {time.perf_counter() - started:.0f} s; {written}\n")


if __name__ == "__main__":
    main()
