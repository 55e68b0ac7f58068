"""Editto: Wan VACE fine-tuned on accepted triplets (Ditto step 8), by default as Ditto's train.sh trains
it with DiffSynth-Studio (models/editto_recipe.py has each choice and its source): a rank-128 LoRA on the
context blocks' attention and feed-forward linears, kept in float32 on a bf16 model; Wan's shifted
timesteps and DiffSynth's per-timestep loss weight; the first frames of each clip, crop-resized; gradient
checkpointing; the text encoder off the device while the transformer trains; a global batch of 64 samples
per optimizer step, as the release's 64 GPUs with one sample each, reached by accumulation on fewer. The
modality curriculum (ours) drops the edited reference frame with a probability that rises over training.

With `workers` above 1 a round trains data-parallel on that many devices with Ray Train, the transformer and
its training state sharded by FSDP2 (models/editto_parallel.py); this process then keeps a copy of the model
for the held-out evaluation only. Every width trains the same samples in the same order, so a round gives
the same losses on 1 worker or 8, up to the order floating-point sums are taken in.

A checkpoint holds the trained weights, the optimizer state keyed by parameter name, the RNG and the
settings, whole (one file each, whatever the width that wrote it), so a round resumes on any width and a
resumed run continues bit-exactly on the same one; each is also written in diffusers' and DiffSynth-Studio's
names."""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from models.device_memory import raises_out_of_device_memory
from models.editto_formats import consumers, diffsynth_names, diffusers_names, lora_scaled
from models.editto_inputs import EdittoInputs, load_triplet
from models.editto_memory import MemoryEstimate, TrainingShape, estimate, refusal, size_of
from models.editto_recipe import (
    CONTEXT_LINEARS,
    CONTEXT_PROJECTIONS,
    WAN_SHIFT,
    Curriculum,
    FlowMatchSchedule,
    NoiseDraw,
    content_seed,
    draw_global_batch,
    train_in_float32,
)
from models.editto_state import optimizer_state, read_training_state, set_optimizer_state, trained_state
from models.frames import crop_resize, to_pil, to_uint8, torch_dtype, wan_frame_count
from models.pipelines import load_pipeline
from models.protocols import (
    EDITTO_CARD,
    EDITTO_DIFFSYNTH,
    EDITTO_DIFFUSERS,
    EDITTO_TRAINING_STATE,
    EDITTO_WEIGHTS,
    CheckpointFiles,
    Triplet,
    TripletFiles,
)
from models.wan_vace import WanVACEFullMaskPipeline

log = logging.getLogger(__name__)
BASE = "base"  # the id of the untrained weights
PER_DEVICE_BATCH = 1  # one sample a device at a time, as DiffSynth's trainer and the release: see global_step


@dataclass
class TrainState:
    step: int = 0  # optimizer steps, of global_batch samples each
    samples_seen: int = 0
    last_loss: float | None = None


@dataclass
class Sharding:
    """Where this copy of the model sits among data-parallel workers, and the collectives they share
    (models/editto_parallel.py makes one in each Ray Train worker)."""

    rank: int
    size: int
    sum_across: Callable[[torch.Tensor], torch.Tensor]  # all-reduce: the sum over the workers
    sync_gradients: Callable[[bool], None]  # whether the next backward averages gradients across workers


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def training_method(lora_rank: int | None, lora_alpha: float | None) -> str:
    return f"lora{lora_rank}a{lora_alpha or lora_rank}" if lora_rank else "projections"


class EdittoTrainer:
    def __init__(
        self,
        path: str,
        device: str = "cuda",
        dtype: str = "bfloat16",
        lr: float = 1e-4,
        height: int = 480,
        width: int = 832,
        num_frames: int = 73,
        lora_rank: int | None = 128,
        lora_alpha: float | None = None,
        lora_targets: str = CONTEXT_LINEARS,
        trainable: tuple[str, ...] | None = None,
        timestep_shift: float = WAN_SHIFT,
        loss_weighting: Literal["diffsynth", "none"] = "diffsynth",
        curriculum_start: int = 0,
        curriculum_end: int = 5000,
        curriculum_shape: Literal["linear", "cosine"] = "linear",
        global_batch: int = 64,
        workers: int = 1,
        checkpoint_every: int = 10,
        max_failures: int = 2,
        gradient_checkpointing: bool = True,
        offload_text_encoder: bool = True,
        eval_draws: int = 4,
        edit_steps: int = 50,
        guidance_scale: float = 5.0,
        seed: int = 0,
    ) -> None:
        self.options = {k: v for k, v in locals().items() if k != "self"}  # what a worker builds its copy from
        if lora_rank and trainable is not None:
            raise ValueError("backends.editto: `trainable` trains layers in full; it needs lora_rank: null")
        if workers < 1 or global_batch < 1 or global_batch % workers:
            divisors = [n for n in range(1, global_batch + 1) if global_batch % n == 0]
            raise ValueError(
                f"backends.editto: global_batch {global_batch} is not a whole number of samples per worker on "
                f"{workers} workers: use a width that divides it ({', '.join(map(str, divisors))})"
            )
        self.workers, self.global_batch = workers, global_batch
        self.accumulation = global_batch // (workers * PER_DEVICE_BATCH)
        self.checkpoint_every, self.max_failures = checkpoint_every, max_failures
        # In host memory until it is known to fit. Its condition's blank half (the source under a full mask) is
        # encoded once per shape, as propagation's is: one VAE encode of the clip fewer per training sample and edit.
        self.pipe = load_pipeline(WanVACEFullMaskPipeline, path, dtype)
        self.dtype = torch_dtype(dtype)  # the frozen weights'; what trains is float32
        self.pipe.vae.to(torch.float32)
        self.pipe.set_progress_bar_config(disable=True)
        self.device, self.height, self.width = device, height, width
        self.num_frames = wan_frame_count(num_frames)
        self.curriculum = Curriculum(curriculum_start, curriculum_end, curriculum_shape)
        self.schedule = FlowMatchSchedule(timestep_shift, loss_weighting)
        self.edit_steps, self.guidance_scale, self.lr, self.seed = edit_steps, guidance_scale, lr, seed
        self.eval_draws, self.lora = eval_draws, bool(lora_rank)
        self.lora_scale = (lora_alpha or lora_rank) / lora_rank if lora_rank else 1.0
        with torch.random.fork_rng(devices=[]):  # the adapters' random start, the same for the same seed
            torch.manual_seed(seed)
            self.trained = self._make_trainable(lora_rank, lora_alpha, lora_targets, trainable or CONTEXT_PROJECTIONS)
        if gradient_checkpointing:
            self.pipe.transformer.enable_gradient_checkpointing()
        self.offload_text_encoder = offload_text_encoder and device != "cpu"
        self.memory = self._check_memory(gradient_checkpointing)
        self.sharding: Sharding | None = None  # set in a data-parallel worker
        self.placed = False
        if workers == 1:  # with more, this copy waits in host memory until the evaluation needs it
            self.place()
        self.initial = {n: p.detach().cpu().clone() for n, p in self.trained.items()}
        self.inputs = EdittoInputs(self.pipe, device, height, width, self.offload_text_encoder)
        self._fresh_optimizer()
        self.weights_id: str | None = BASE  # which weights the model holds now; None: not to be trusted
        self.state_id: str | None = BASE  # which optimizer/RNG state; None after loading weights alone
        self.lock = threading.Lock()
        # What the trained parameters are: a checkpoint resumes only into the same.
        self.spec = {
            "base_model": path.rstrip("/").split("/")[-1],
            "method": training_method(lora_rank, lora_alpha),
            "targets": lora_targets if lora_rank else list(trainable or CONTEXT_PROJECTIONS),
        }
        # How they are trained: a resume applies these, as configured, over the checkpoint's (with a warning).
        self.settings = {
            "lr": lr,
            "curriculum": asdict(self.curriculum),
            "timestep_shift": timestep_shift,
            "loss_weighting": loss_weighting,
            "size": f"{self.num_frames}x{height}x{width}",
            "global_batch": global_batch,
        }
        self.changed_on_resume: dict[str, Any] = {}
        self.spec_id = self.identity(
            path,
            lora_rank,
            lora_alpha,
            lr,
            num_frames,
            height,
            width,
            timestep_shift,
            loss_weighting,
            curriculum_start,
            curriculum_end,
            curriculum_shape,
            global_batch,
        )

    @staticmethod
    def identity(
        path: str,
        lora_rank: int | None,
        lora_alpha: float | None,
        lr: float,
        num_frames: int,
        height: int,
        width: int,
        timestep_shift: float,
        loss_weighting: str,
        curriculum_start: int,
        curriculum_end: int,
        curriculum_shape: str,
        global_batch: int,
        **_: Any,
    ) -> str:
        return (
            f"editto:{path.rstrip('/').split('/')[-1]}:{training_method(lora_rank, lora_alpha)}:lr{lr}:"
            f"{wan_frame_count(num_frames)}x{height}x{width}:shift{timestep_shift}:{loss_weighting}:"
            f"curriculum{curriculum_start}-{curriculum_end}{curriculum_shape}:batch{global_batch}"
        )

    def _make_trainable(
        self, rank: int | None, alpha: float | None, targets: str, patterns: tuple[str, ...]
    ) -> dict[str, torch.nn.Parameter]:
        transformer = self.pipe.transformer
        transformer.requires_grad_(False)
        if rank:
            from peft import LoraConfig

            transformer.add_adapter(LoraConfig(r=rank, lora_alpha=alpha or rank, target_modules=targets))
            patterns = (r"\.lora_[AB]\.",)
        compiled = [re.compile(p) for p in patterns]
        trained = {n: p for n, p in transformer.named_parameters() if any(r.search(n) for r in compiled)}
        if not trained:
            raise ValueError(f"backends.editto: no transformer parameter matches {patterns}")
        outside = sorted(n for n in trained if not n.startswith("vace_blocks."))
        if outside:  # the exports name the VACE branch (DiffSynth's pipe.vace) only
            raise ValueError(f"backends.editto: Editto trains the VACE context blocks only, not {outside[0]}")
        for param in trained.values():
            param.requires_grad_(True)
            if rank:  # PEFT casts each adapter's input to the adapter's dtype and the output back
                param.data = param.data.float()
        if not rank and self.dtype != torch.float32:
            for name in {n.rsplit(".", 1)[0] for n in trained}:
                train_in_float32(transformer.get_submodule(name), self.dtype)
        return trained

    def _check_memory(self, gradient_checkpointing: bool) -> MemoryEstimate:
        pipe = self.pipe
        shape = TrainingShape(
            self.height,
            self.width,
            self.num_frames,
            sum(p.numel() for p in self.trained.values()),
            self.lora,
            gradient_checkpointing,
            self.offload_text_encoder,
            self.dtype.itemsize,
            self.workers,
        )
        counts = [sum(p.numel() for p in m.parameters()) for m in (pipe.text_encoder, pipe.vae)]
        model = size_of(pipe.transformer, *counts)
        peak = estimate(model, shape)
        log.info("Editto on %s: %s", self.device, peak.line())
        if self.device.startswith("cuda"):
            free, total = torch.cuda.mem_get_info(torch.device(self.device))
            refused = refusal(model, shape, self.device, free / 2**30, total / 2**30, self.global_batch)
            if refused:
                raise ValueError(refused)
        return peak

    def place(self) -> None:
        """The model on its device: the transformer and the VAE, and the text encoder unless it visits only to
        encode."""
        for part in ("transformer", "vae") + (() if self.offload_text_encoder else ("text_encoder",)):
            getattr(self.pipe, part).to(self.device)
        self.placed = True

    def park(self) -> None:
        """The model back in host memory, so that the data-parallel workers have the devices to themselves."""
        if self.placed and self.device != "cpu":
            for part in ("transformer", "vae", "text_encoder"):
                getattr(self.pipe, part).to("cpu")
            torch.cuda.empty_cache()
        self.placed = False

    def shard(self, sharding: Sharding, shard_transformer: Callable[[torch.nn.Module], None]) -> None:
        """This copy as one of `sharding.size` data-parallel workers: the transformer (frozen weights and
        trained ones) split across them by `shard_transformer`, the rest on this worker's device."""
        self.sharding = sharding
        shard_transformer(self.pipe.transformer)
        self.place()
        names = set(self.trained)
        self.trained = {n: p for n, p in self.pipe.transformer.named_parameters() if n in names}
        self._fresh_optimizer()

    def _fresh_optimizer(self) -> None:
        self.optimizer = torch.optim.AdamW(self.trained.values(), lr=self.lr)  # weight decay 0.01, as DiffSynth's
        self.generator = torch.Generator("cpu").manual_seed(self.seed)
        self.state = TrainState()
        self.changed_on_resume = {}

    def reset(self) -> None:
        """Back to the base model, as if just loaded."""
        self.weights_id = self.state_id = None
        with torch.no_grad():
            for name, param in self.trained.items():
                param.copy_(self.initial[name])
        self._fresh_optimizer()
        self.weights_id = self.state_id = BASE

    def flow_matching_loss(
        self,
        triplet: Triplet,
        condition: tuple[torch.Tensor, torch.Tensor],
        draw: NoiseDraw,
        generator: torch.Generator,
    ) -> torch.Tensor:
        """x_t = (1-s) x0 + s noise; the model predicts the velocity noise - x0; the squared error is weighted
        by the timestep's weight (DiffSynth's FlowMatchSFTLoss). `condition`: the VACE context and x0."""
        context, x0 = condition
        noise = torch.randn(x0.shape, generator=generator).to(self.device)
        noisy = (1 - draw.sigma) * x0 + draw.sigma * noise
        pred = self.pipe.transformer(
            hidden_states=noisy.to(self.dtype),
            timestep=torch.tensor([draw.timestep], device=self.device),
            encoder_hidden_states=self.inputs.prompt_embeds(triplet.instruction).to(self.dtype),
            control_hidden_states=context.to(self.dtype),
            return_dict=False,
        )[0]
        return torch.nn.functional.mse_loss(pred.float(), (noise - x0).float()) * draw.weight

    def condition(self, triplet: Triplet, keep_reference: bool) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            return self.inputs.condition(triplet, self.num_frames, keep_reference)

    def global_step(self, examples: Sequence[TripletFiles]) -> float:
        """One optimizer step on `global_batch` samples. Every worker draws the whole batch from the same
        generator and computes every `workers`-th sample of it, one at a time (the curriculum makes samples
        with and without the reference frame, of two lengths, that do not stack), accumulating the gradient
        of the batch's mean loss; the workers average their gradients once, at the last. Returns the batch's
        mean loss."""
        sharding = self.sharding
        rank, size = (sharding.rank, sharding.size) if sharding else (0, 1)
        drop = self.curriculum.drop_probability(self.state.step)
        draws = draw_global_batch(self.generator, len(examples), self.global_batch, drop, self.schedule)
        mine = draws[rank::size]
        batch = [load_triplet(examples[d.example], self.num_frames) for d in mine]
        self.inputs.encode_prompts({t.instruction for t in batch})  # one visit of the text encoder a step
        self.optimizer.zero_grad(set_to_none=True)
        total = torch.zeros((), dtype=torch.float64)
        for k, (draw, triplet) in enumerate(zip(mine, batch, strict=True)):
            if sharding:
                sharding.sync_gradients(k == len(mine) - 1)
            noise = torch.Generator("cpu").manual_seed(draw.noise_seed)
            loss = self.flow_matching_loss(triplet, self.condition(triplet, draw.keep_reference), draw.noise, noise)
            (loss / len(mine)).backward()
            total += loss.detach().double().cpu()
        if sharding:
            total = sharding.sum_across(total)
        self.optimizer.step()
        self.state.step += 1
        self.state.samples_seen += self.global_batch
        self.state.last_loss = float(total) / self.global_batch
        return self.state.last_loss

    @raises_out_of_device_memory
    def train(
        self,
        examples: list[TripletFiles],
        steps: int,
        resume: CheckpointFiles | None,
        save_to: Path,
        heldout: list[TripletFiles] | None = None,
    ) -> dict[str, Any]:
        """`steps` optimizer steps from `resume` (None: the base model), here or on `workers` data-parallel
        workers, then the held-out flow-matching losses. A failure anywhere leaves the model marked untrusted:
        the next call starts again from a checkpoint."""
        if not examples:
            raise ValueError("no training samples")
        with self.lock:
            log.info(
                "Editto round of %d steps of %d samples (%d workers x %d x %d accumulated) on %s: %s",
                steps,
                self.global_batch,
                self.workers,
                PER_DEVICE_BATCH,
                self.accumulation,
                self.device,
                self.memory.line(),
            )
            if self.workers > 1:
                card = self._train_on_workers(examples, steps, resume, save_to)
            else:
                card = self._train_here(examples, steps, resume, save_to)
            card.update(self.heldout_losses(heldout or []))
            (save_to / EDITTO_CARD).write_text(json.dumps(card, indent=2))
            return card

    def _train_here(
        self, examples: list[TripletFiles], steps: int, resume: CheckpointFiles | None, save_to: Path
    ) -> dict[str, Any]:
        if resume is None and (self.weights_id, self.state_id) != (BASE, BASE):
            self.reset()
        elif resume is not None and resume.id != self.state_id:
            self.restore(resume)
        self.weights_id = self.state_id = None  # moved from here on, until saved
        self.inputs.prompts.clear()  # this round's instructions only: they live in host memory
        losses = [self.global_step(examples) for _ in range(steps)]
        card = self.save(save_to)
        card.update(round_card(losses, restarts=[]))
        self.weights_id = self.state_id = sha256_file(save_to / EDITTO_WEIGHTS)
        self.changed_on_resume = {}  # said on the round that resumed; the next continues as it is
        return card

    def _train_on_workers(
        self, examples: list[TripletFiles], steps: int, resume: CheckpointFiles | None, save_to: Path
    ) -> dict[str, Any]:
        from models.editto_parallel import fit_round

        self.weights_id = self.state_id = None
        self.park()
        card = fit_round(self, examples, steps, resume, save_to)
        self._load_weights(save_to / EDITTO_WEIGHTS)  # for the evaluation, in this process
        self.weights_id = sha256_file(save_to / EDITTO_WEIGHTS)  # the optimizer state stays the workers'
        return card

    def heldout_losses(self, heldout: list[TripletFiles]) -> dict[str, Any]:
        """Each held-out sample's deterministic flow-matching loss without the reference frame (what Editto
        is for) and with it (what the curriculum trains on early), and their means."""
        if heldout and not self.placed:
            self.place()
        triplets = [load_triplet(files, self.num_frames) for files in heldout]
        self.inputs.encode_prompts({t.instruction for t in triplets})
        without = [self.eval_loss(t, keep_reference=False) for t in triplets]
        with_reference = [self.eval_loss(t, keep_reference=True) for t in triplets]
        return {
            "heldout_flow_losses": without,
            "heldout_flow_loss": float(np.mean(without)) if without else None,
            "heldout_flow_losses_with_reference": with_reference,
            "heldout_flow_loss_with_reference": float(np.mean(with_reference)) if with_reference else None,
        }

    @raises_out_of_device_memory
    def edit(
        self,
        source: np.ndarray,
        instruction: str,
        checkpoint: CheckpointFiles,
        seed: int,
        reference: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Editto at inference, as infer_ditto.py runs it: the clip's first `num_frames` frames (crop-resized)
        as VACE context, the instruction as prompt, and the edited reference frame (crop-resized) where one is
        given. Returns (those source frames, the edit)."""
        h, w = self.height, self.width
        window = self.inputs.window(source, self.num_frames)
        with self.lock:
            if not self.placed:
                self.place()
            if checkpoint.id != self.weights_id:
                self.weights_id = self.state_id = None
                self._load_weights(checkpoint.weights)
                self.weights_id = checkpoint.id
            self.inputs.encode_prompts({instruction, ""})
            references = to_pil(crop_resize(reference[None], w, h)) if reference is not None else None
            with torch.inference_mode():
                frames = self.pipe(
                    video=to_pil(window),
                    mask=[Image.new("L", (w, h), 255)] * len(window),
                    reference_images=references,
                    prompt_embeds=self.inputs.prompt_embeds(instruction),
                    negative_prompt_embeds=self.inputs.prompt_embeds(""),
                    height=h,
                    width=w,
                    num_frames=len(window),
                    num_inference_steps=self.edit_steps,
                    guidance_scale=self.guidance_scale,
                    generator=torch.Generator("cpu").manual_seed(seed),
                    output_type="np",
                ).frames[0]
        return window, to_uint8(np.asarray(frames))

    def eval_loss(self, triplet: Triplet, keep_reference: bool = False) -> float:
        """The loss at fixed timesteps spread over the schedule, with noise fixed by the sample's content: the
        same sample scores the same in every evaluation but for the weights."""
        generator = torch.Generator("cpu").manual_seed(content_seed(triplet))
        condition = self.condition(triplet, keep_reference)
        with torch.no_grad():
            losses = [
                self.flow_matching_loss(triplet, condition, d, generator).item()
                for d in self.schedule.evaluation_draws(self.eval_draws)
            ]
        return float(np.mean(losses))

    def save(self, folder: Path, exports: bool = True) -> dict[str, Any]:
        """The checkpoint, whole, in `folder` (by the first worker; every worker takes part in gathering the
        shards), and its card."""
        sharded = self.sharding is not None
        state = trained_state(self.trained)
        optimizer = optimizer_state(self.pipe.transformer, self.optimizer, sharded)
        card = {
            **asdict(self.state),
            **self.settings,
            "spec": self.spec,
            "workers": self.workers,
            "per_device_batch": PER_DEVICE_BATCH,
            "accumulation": self.accumulation,
            "reference_drop_probability": self.curriculum.drop_probability(self.state.step),
            "trained_parameters": len(self.trained),
            "trained_values": sum(t.numel() for t in state.values()),
            "estimated_peak_gib": round(self.memory.peak_gib, 1),
            "changed_on_resume": self.changed_on_resume,
            "base_model": self.spec_id,
            "consumers": {name: asdict(c) for name, c in consumers(self.lora).items()},
        }
        if sharded and self.sharding.rank != 0:  # type: ignore[union-attr]
            return card
        folder.mkdir(parents=True, exist_ok=True)
        save_file(state, folder / EDITTO_WEIGHTS)
        if exports:
            exported = lora_scaled(state, self.lora_scale) if self.lora else state
            save_file(diffusers_names(exported, self.lora), folder / EDITTO_DIFFUSERS)
            save_file(diffsynth_names(exported), folder / EDITTO_DIFFSYNTH)
        torch.save(
            {
                "optimizer": optimizer,
                "generator": self.generator.get_state(),
                **asdict(self.state),
                "spec": self.spec,
                "settings": self.settings,
            },
            folder / EDITTO_TRAINING_STATE,
        )
        (folder / EDITTO_CARD).write_text(json.dumps(card, indent=2))
        return card

    def _load_weights(self, weights: Path) -> None:
        saved = load_file(weights)
        missing = sorted(set(self.trained) - set(saved))
        if missing:
            raise ValueError(f"{weights} lacks {len(missing)} trained parameters, e.g. {missing[0]}")
        with torch.no_grad():
            for name, param in self.trained.items():
                if hasattr(param, "device_mesh"):  # a shard: this worker's part of the whole
                    from torch.distributed.tensor import distribute_tensor

                    param.copy_(distribute_tensor(saved[name].to(param.dtype), param.device_mesh, param.placements))
                else:
                    param.copy_(saved[name])

    def restore(self, checkpoint: CheckpointFiles) -> None:
        """Weights, optimizer, RNG and step of a checkpoint, written at any width: training continues as if
        never stopped. The learning rate and curriculum are the configured ones, applied on purpose: where the
        checkpoint was trained with others, a warning names them and the card records them."""
        if checkpoint.training_state is None:
            raise ValueError(f"checkpoint {checkpoint.id} has no training state to resume from")
        extra = read_training_state(checkpoint.training_state, list(self.trained))
        saved_spec = extra.get("spec")
        if saved_spec is not None and saved_spec != self.spec:
            raise ValueError(
                f"checkpoint {checkpoint.id[:12]} was trained as {saved_spec}, not as backends.editto now says "
                f"({self.spec}): resume it with the settings it was trained with, or train from the base model"
            )
        self.weights_id = self.state_id = None
        self._load_weights(checkpoint.weights)
        set_optimizer_state(self.pipe.transformer, self.optimizer, extra["optimizer"], self.sharding is not None)
        for group in self.optimizer.param_groups:  # the saved state brought back the saved rate
            group["lr"] = self.lr
        self.generator.set_state(extra["generator"])
        self.state = TrainState(extra["step"], extra["samples_seen"], extra["last_loss"])
        saved = extra.get("settings", {})
        self.changed_on_resume = {
            k: {"was": saved.get(k), "now": v} for k, v in self.settings.items() if saved.get(k) != v
        }
        if self.changed_on_resume:
            log.warning(
                "resuming Editto checkpoint %s with the configured settings, not the ones it was trained with: %s",
                checkpoint.id[:12],
                self.changed_on_resume,
            )
        self.weights_id = self.state_id = checkpoint.id


def round_card(losses: list[float], restarts: list[int]) -> dict[str, Any]:
    """What a round adds to its checkpoint's card: each step's loss (the global batch's mean) and the steps a
    restarted worker group resumed from."""
    return {"step_losses": losses, "mean_loss": float(np.mean(losses)) if losses else None, "resumed_at": restarts}
