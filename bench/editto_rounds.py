"""How long an Editto training round takes per GPU count, by the FLOP count. The round is the full profile's
(agent/profiles/full.yaml: training.steps optimizer steps of backends.editto global_batch samples at its
height x width x frames); one sample's forward and backward is counted on the meta device as bench/flops.py
counts its train_editto row (bench/stages.editto_sample), at an assumed MFU on one H100's bf16 dense peak.
N data-parallel GPUs share each step's samples (N workers x global_batch/N accumulated), so the round's
GPU-hours stay the same and its wall time falls N-fold; what FSDP2 adds is not counted (it gathers each
block's weights three times a sample, forward, recompute and backward: 3 x 34.7 GB of bf16 a sample for the
14B model, against ~18 s of compute, a few percent over NVLink, more across nodes).

The round's held-out evaluation runs after it on one GPU: every held-out sample edited twice (with the edited
reference frame and without) at backends.editto edit_steps and guidance_scale, the held-out set being
training.steer_min_samples samples of each category of the mix once it is full.

    python -m bench.editto_rounds                 # the full profile, 1, 8 and 64 GPUs
    python -m bench.editto_rounds --gpus 2 4 --mfu 0.3
    python -m bench.editto_rounds --quick         # the tiny model at tiny size: seconds (CI)
"""

from __future__ import annotations

import argparse
import sys

from agent.config import load_config
from bench.meta_flops import MODELS
from bench.stages import editto_sample, propagate, wan_latent_frames


def hours(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.0f} min"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gpus", type=int, nargs="+", default=[1, 8, 64])
    parser.add_argument("--mfu", type=float, default=0.4, help="assumed model FLOPs utilisation (0-1]")
    parser.add_argument("--quick", action="store_true", help="the tiny model at 32x64x9: checks the code path")
    args = parser.parse_args()
    cfg = load_config("full", None, None)
    editto, training = cfg.backends.editto or {}, cfg.training
    size = (32, 64, 9) if args.quick else (editto["height"], editto["width"], editto["num_frames"])
    batch, steps = editto.get("global_batch", 64), training.steps
    device = next(iter(MODELS["devices"]))
    peak = MODELS["devices"][device]["bf16_tflops"] * 1e12 * args.mfu
    sample = editto_sample(*size, quick=args.quick).total
    train_s = steps * batch * sample / peak
    heldout = training.steer_min_samples * len(cfg.target_shares())
    edit = {
        "path": editto["path"],
        "steps": editto.get("edit_steps", 50),
        "guidance_scale": editto.get("guidance_scale", 5.0),
    }
    sizes = {"clip": size, "quick": args.quick}
    evaluation_s = heldout * sum(propagate(edit, sizes, reference=r).total for r in (False, True)) / peak
    h, w, t = size
    out = sys.stdout
    out.write(
        f"Editto round, full profile: {steps} steps x {batch} samples at {h}x{w}x{t} "
        f"({wan_latent_frames(t) + 1} latent frames with the reference), {sample / 1e12:,.0f} TFLOP a sample; "
        f"{device} at MFU {args.mfu}\n\n"
    )
    out.write("| GPUs | workers x per device x accumulated | training, wall | training, GPU-hours |\n")
    out.write("| --- | --- | --- | --- |\n")
    for n in args.gpus:
        split = f"{n} x 1 x {batch // n}" if batch % n == 0 else f"{n}: does not divide {batch}"
        out.write(f"| {n} | {split} | {hours(train_s / n)} | {train_s / 3600:.1f} |\n")
    out.write(
        f"\nheld-out evaluation after it, on one GPU: {heldout} samples ({training.steer_min_samples} of each of "
        f"{len(cfg.target_shares())} categories) x 2 edits ({edit['steps']} steps, CFG {edit['guidance_scale']:g}): "
        f"{hours(evaluation_s)}\n"
    )


if __name__ == "__main__":
    main()
