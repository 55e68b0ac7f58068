"""What Editto trains and how, as the released code does it, each piece with its source:
- what trains: Ditto's train.sh trains a rank-128 LoRA (DiffSynth's default alpha = rank) on the VACE
  context blocks' q, k, v, o and both feed-forward linears (`--lora_base_model vace --lora_target_modules
  q,k,v,o,ffn.0,ffn.2 --lora_rank 128`); in diffusers' names those are CONTEXT_LINEARS;
- the noise level: DiffSynth-Studio's FlowMatchScheduler("Wan").set_timesteps(1000, training=True)
  (diffsynth/diffusion/flow_match.py, called by training_module.switch_pipe_to_training_mode): 1000 sigmas
  evenly over [1, 0), shifted by Wan's shift of 5, one drawn uniformly per step (loss.FlowMatchSFTLoss);
- the loss: MSE against the velocity noise - x0, times the scheduler's per-timestep weight (a bell
  exp(-2((t - 500)/1000)^2) over the shifted timestep t, shifted to 0 at its minimum and scaled to mean 1).
The modality curriculum is the paper's idea; the released code has none, so its schedule is ours."""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Literal

import torch

from models.protocols import Triplet

# diffusers' names of the linears train.sh's LoRA targets (DiffSynth's q,k,v,o,ffn.0,ffn.2 of pipe.vace),
# by diffusers' own renaming (scripts/convert_wan_to_diffusers.py, VACE_TRANSFORMER_KEYS_RENAME_DICT).
CONTEXT_LINEARS = r"vace_blocks\.\d+\.(attn[12]\.(to_q|to_k|to_v|to_out\.0)|ffn\.net\.(0\.proj|2))"
# The paper's text: only the context branch's projections train (an option here, not the released code).
CONTEXT_PROJECTIONS = (r"^vace_blocks\.\d+\.proj_(in|out)\.",)
NUM_TRAIN_TIMESTEPS = 1000
WAN_SHIFT = 5.0  # DiffSynth's set_timesteps_wan default


@dataclass(frozen=True)
class Curriculum:
    """Probability of dropping the reference frame at a training step: 0 before start, 1 after end. Our
    schedule: the paper says only that the reference is removed gradually, and the released code has no
    curriculum at all (its train.sh gives no reference)."""

    start_step: int = 0
    end_step: int = 5000
    shape: str = "linear"  # linear | cosine

    def drop_probability(self, step: int) -> float:
        if step <= self.start_step:
            return 0.0
        if step >= self.end_step:
            return 1.0
        x = (step - self.start_step) / (self.end_step - self.start_step)
        return x if self.shape == "linear" else 0.5 - 0.5 * math.cos(math.pi * x)


@dataclass(frozen=True)
class NoiseDraw:
    sigma: float  # x_t = (1 - sigma) x0 + sigma noise
    timestep: float  # sigma * 1000, what the transformer is told
    weight: float  # the loss weight at this timestep


class FlowMatchSchedule:
    """The training timesteps and loss weights of DiffSynth's Wan scheduler. `shift=1` with
    `weighting="none"` is plain uniform sigma with an unweighted loss."""

    def __init__(self, shift: float = WAN_SHIFT, weighting: Literal["diffsynth", "none"] = "diffsynth") -> None:
        self.shift, self.weighting = shift, weighting
        sigmas = torch.linspace(1.0, 0.0, NUM_TRAIN_TIMESTEPS + 1, dtype=torch.float64)[:-1]
        self.sigmas = shift * sigmas / (1 + (shift - 1) * sigmas)
        self.timesteps = self.sigmas * NUM_TRAIN_TIMESTEPS
        if weighting == "diffsynth":
            bell = torch.exp(-2 * ((self.timesteps - NUM_TRAIN_TIMESTEPS / 2) / NUM_TRAIN_TIMESTEPS) ** 2)
            above = bell - bell.min()
            self.weights = above * (NUM_TRAIN_TIMESTEPS / above.sum())
        else:
            self.weights = torch.ones_like(self.sigmas)

    def draw(self, generator: torch.Generator) -> NoiseDraw:
        k = int(torch.randint(NUM_TRAIN_TIMESTEPS, (1,), generator=generator))
        return self.at(k)

    def at(self, index: int) -> NoiseDraw:
        return NoiseDraw(float(self.sigmas[index]), float(self.timesteps[index]), float(self.weights[index]))

    def evaluation_draws(self, count: int) -> list[NoiseDraw]:
        """`count` timesteps evenly over the schedule's indices: the same ones every evaluation."""
        return [self.at(int((k + 0.5) * NUM_TRAIN_TIMESTEPS / count)) for k in range(count)]


@dataclass(frozen=True)
class SampleDraw:
    """What one sample of a global batch is: which example, whether the reference frame is fed, the noise
    level, and the seed of its noise. Drawn for the whole batch from one generator that every data-parallel
    worker holds in the same state, so a sample is the same whichever worker computes it: any width trains
    the same samples in the same order."""

    example: int
    keep_reference: bool
    noise: NoiseDraw
    noise_seed: int


def draw_global_batch(
    generator: torch.Generator, examples: int, size: int, drop_probability: float, schedule: FlowMatchSchedule
) -> list[SampleDraw]:
    draws = []
    for _ in range(size):
        example = int(torch.randint(examples, (1,), generator=generator))
        keep_reference = bool(torch.rand((), generator=generator) >= drop_probability)
        noise = schedule.draw(generator)
        noise_seed = int(torch.randint(2**62, (1,), generator=generator))
        draws.append(SampleDraw(example, keep_reference, noise, noise_seed))
    return draws


def train_in_float32(module: torch.nn.Module, dtype: torch.dtype) -> None:
    """A fully trained layer of a bf16 model kept in float32 (a master copy in place: an AdamW step of 1e-4
    on a weight of 0.1 would round away in bf16); its input is cast up and its output back down."""
    module.float()
    module.register_forward_pre_hook(lambda _m, args: tuple(a.float() if torch.is_tensor(a) else a for a in args))
    module.register_forward_hook(lambda _m, _args, out: out.to(dtype))


def content_seed(triplet: Triplet) -> int:
    """The same noise for the same sample in every evaluation, whatever else is evaluated beside it."""
    digest = hashlib.blake2b(digest_size=8)
    for part in (triplet.instruction.encode(), triplet.source.tobytes(), triplet.edited.tobytes()):
        digest.update(part)
    return int.from_bytes(digest.digest(), "little") >> 1
