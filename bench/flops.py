"""FLOPs per call of every neural stage of each preset (bench/stages.PRESETS: configs/fast.yaml, fast_480p.yaml,
paper.yaml, and the full profile alone) at the clip size the preset runs, counted without a GPU: each real
diffusers/transformers class is built from its published config (bench/flops_models.yaml) on PyTorch's meta
device and run once under torch.utils.flop_counter.FlopCounterMode. Nothing is allocated. Then the GPU memory
the preset's weights take resident (bench/resident.py), and on which card they fit.

What is counted, per call of a stage (bench/stages.py reads each stage's settings from the preset's config):
- every transformer/denoiser forward, exactly, at the stage's token counts (steps x CFG passes: diffusers runs
  a second, unconditional pass only at a guidance scale above 1);
- the VAE encodes and decode the pipeline does, and its text encoder once per prompt (twice under CFG);
- Qwen2.5-VL: vision tower + language-model prefill, then the answer's decode, token by token.
Not counted: schedulers, pre/post-processing on the CPU, host-device copies, elementwise glue the counter
ignores (bench/gpu_costs.py times a whole call beside its parts).

How a call's FLOPs become GPU-seconds (`priced`), on each card of flops_models.yaml:
- matmuls at the dense peak of their dtype times --mfu: the linears a stage runs in FP8 (`quantization: fp8`:
  models/pipelines.fp8_linears) at the FP8 peak, everything else at the bf16 peak;
- a denoiser's attention on SageAttention (`attention: sage`) at the kernel's published throughput
  (flops_models.yaml `achieved`), not at a peak times MFU; on PyTorch's attention, as the rest;
- every VAE at the Wan VAE's measured throughput (8.5% of the bf16 peak, an H200 run) until a GPU measures the
  bf16 one;
- a VLM's answer at eager PyTorch's batch-1 decode rate (25.5 tokens/s: CPU-bound), one call at a time, as
  models/qwen_vl.py generates; or, for the same model at a vLLM server that batches the episodes' requests
  (`kind: openai`), at a server's batched throughput (`vlm_at_endpoint` in the costs file).
The `lowest s` columns are the floor instead: every FLOP at its dtype's peak and every decoded token's weight
reads at full HBM bandwidth. `bench/costs_<preset>.yaml` gets the priced seconds, per tool and card (and, for a
preset that asks for SageAttention, what a run that falls back to PyTorch's attention pays), for bench/policy.py.

    python -m bench.flops                          # every preset: ~6 minutes here
    python -m bench.flops --preset fast --mfu 0.3 --costs-dir /tmp
    python -m bench.flops --quick                  # tiny clips, no alternatives, nothing written: seconds
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import yaml

from bench.meta_flops import MODELS
from bench.resident import gb_left, parts, resident_gb
from bench.stages import PRESETS, Stage, editto_stages, preset_sizes, size_name, stages

BENCH = Path(__file__).parent
CARDS = tuple(MODELS["devices"])
ACHIEVED = MODELS["achieved"]


def lowest_seconds(stage: Stage, card: str) -> float:
    """Every FLOP at its dtype's dense peak (FP8 linears at the FP8 peak), plus the decode's weight reads at full
    HBM bandwidth: no call can be faster."""
    spec = MODELS["devices"][card]
    flops = stage.flops.total - stage.flops.fp8
    compute = flops / (spec["bf16_tflops"] * 1e12) + stage.flops.fp8 / (spec["fp8_tflops"] * 1e12)
    return compute + stage.decode_bytes / (spec["hbm_tb_s"] * 1e12)


def priced_seconds(stage: Stage, card: str, mfu: float, endpoint: bool = False) -> float:
    """GPU-seconds a call is priced at (the module's docstring says how); with `endpoint`, a VLM's answer at a
    batching server's rate."""
    spec, f = MODELS["devices"][card], stage.flops
    sage = f.attention if stage.attention == "sage" else 0.0
    bf16 = f.total - f.fp8 - sage - f.vae - f.decode
    seconds = bf16 / (spec["bf16_tflops"] * 1e12 * mfu) + f.fp8 / (spec["fp8_tflops"] * 1e12 * mfu)
    seconds += sage / (ACHIEVED["sage_attention_tflops"] * 1e12) + f.vae / (ACHIEVED["vae_tflops"] * 1e12)
    rate = ACHIEVED["endpoint_decode_tokens_per_s" if endpoint else "decode_tokens_per_s"]
    return seconds + stage.decode_tokens / rate


def costs_path(directory: Path, preset: str) -> Path:
    return directory / f"costs_{preset}.yaml"


def per_tool(
    table: list[Stage], card: str, mfu: float, fallback: bool = False, endpoint: bool = False
) -> dict[str, float]:
    """Seconds per call of each graph tool (the preset's choice of each stage); with `fallback`, on PyTorch's
    attention wherever the preset asks for SageAttention (what a run without the kernel pays); with `endpoint`,
    the VLM roles at a batching server."""
    chosen = [replace(s, attention="native") if fallback else s for s in table + editto_stages() if s.default]
    return {s.tool: round(priced_seconds(s, card, mfu, endpoint), 2) for s in chosen}


def config_name(preset: str) -> str | None:
    path = PRESETS[preset]
    return f"configs/{path.name}" if path else None


def write_costs(path: Path, preset: str, table: list[Stage], mfu: float) -> None:
    size = size_name(preset_sizes(preset))
    config = config_name(preset) or "the full profile alone"
    header = (
        f"# Written by `python -m bench.flops --mfu {mfu}`: GPU-seconds per call of each tool of the\n"
        f"# `{preset}` preset ({config}, clips of {size}; Editto's rows at 832x480x73) on one card of each kind,\n"
        "# priced as bench/flops.py says. Tools absent here hold no GPU (ingest, fingerprints).\n"
    )
    body: dict[str, object] = {"preset": preset, "config": config_name(preset), "size": size, "mfu": mfu}
    body["gb_left"] = {card: round(gb_left(preset, card), 1) for card in CARDS}  # for activations, once weights are on
    body["seconds_per_call"] = {card: per_tool(table, card, mfu) for card in CARDS}
    if any(s.attention == "sage" for s in table if s.default):
        body["without_sage"] = {card: per_tool(table, card, mfu, fallback=True) for card in CARDS}
    body["vlm_at_endpoint"] = {card: per_tool(table, card, mfu, endpoint=True) for card in CARDS}
    path.write_text(header + yaml.safe_dump(body, sort_keys=False))


def print_table(preset: str, table: list[Stage], mfu: float) -> None:
    out = sys.stdout
    config = config_name(preset) or "the full profile alone"
    size = table[0].size if table else ""
    out.write(
        f"\n`{preset}` preset ({config}, {size}):\n\n| tool | stage | TFLOPs/call | FP8 | attention | VAE "
        f"| answer tokens | {' | '.join(f'{c} lowest s' for c in CARDS)} | {' | '.join(f'{c} s' for c in CARDS)} |\n"
        f"|{' --- |' * (7 + 2 * len(CARDS))}\n"
    )
    for s in table:
        f = s.flops
        shares = " | ".join(f"{part / f.total:.0%}" if part else "-" for part in (f.fp8, f.attention, f.vae))
        lowest = " | ".join(f"{lowest_seconds(s, c):.2f}" for c in CARDS)
        priced = " | ".join(f"{priced_seconds(s, c, mfu):,.1f}" for c in CARDS)
        mark = "" if s.default else " (alt.)"
        out.write(
            f"| {s.tool}{mark} | {s.name} | {f.total / 1e12:,.1f} | {shares} | {s.decode_tokens or '-'} "
            f"| {lowest} | {priced} |\n"
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
    room = ", ".join(f"{c}: {MODELS['devices'][c]['memory_gb'] - total - largest:+.0f} GB left" for c in CARDS)
    out.write(f"| all | resident{' + the largest offloaded' if largest else ''} | {total + largest:.1f} | {room} |\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=PRESETS, action="append", help="default: every preset")
    parser.add_argument("--mfu", type=float, default=0.4, help="model FLOPs utilisation of the matmuls (0-1]")
    parser.add_argument("--costs-dir", type=Path, default=BENCH, help="where costs_<preset>.yaml are written")
    parser.add_argument(
        "--quick", action="store_true", help="tiny clips, no alternatives, no Editto rows, no costs written"
    )
    args = parser.parse_args()
    started = time.perf_counter()
    for preset in args.preset or PRESETS:
        table = stages(preset, quick=args.quick, alternatives=not args.quick)
        print_table(preset, table, args.mfu)
        print_resident(preset)
        if not args.quick:
            print_table(preset, editto_stages(), args.mfu)
            write_costs(costs_path(args.costs_dir, preset), preset, table, args.mfu)
    written = "nothing written (--quick)" if args.quick else f"wrote costs_<preset>.yaml in {args.costs_dir}"
    sys.stdout.write(f"\ncounted in {time.perf_counter() - started:.0f} s; {written}\n")


if __name__ == "__main__":
    main()
