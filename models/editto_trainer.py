"""Editto: Wan VACE fine-tuned on accepted triplets (Ditto step 8), by default as Ditto's train.sh trains
it with DiffSynth-Studio (models/editto_recipe.py has each choice and its source): a rank-128 LoRA on the
context blocks' attention and feed-forward linears, kept in float32 on a bf16 model; Wan's shifted
timesteps and DiffSynth's per-timestep loss weight; the first frames of each clip, crop-resized; gradient
checkpointing; the text encoder off the device while the transformer trains. The modality curriculum (ours)
drops the edited reference frame with a probability that rises over training. A checkpoint holds the
trained weights, the optimizer and RNG state and the settings they were trained with, so a resumed run
continues bit-exactly; each is also written in diffusers' and DiffSynth-Studio's names."""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from models.device_memory import raises_out_of_device_memory
from models.editto_formats import consumers, diffsynth_names, diffusers_names, lora_scaled
from models.editto_inputs import EdittoInputs
from models.editto_memory import MemoryEstimate, TrainingShape, estimate, refusal, size_of
from models.editto_recipe import (
    CONTEXT_LINEARS,
    CONTEXT_PROJECTIONS,
    WAN_SHIFT,
    Curriculum,
    FlowMatchSchedule,
    NoiseDraw,
    content_seed,
    train_in_float32,
)
from models.frames import to_pil, to_uint8, torch_dtype, wan_frame_count
from models.pipelines import load_pipeline
from models.protocols import (
    EDITTO_CARD,
    EDITTO_DIFFSYNTH,
    EDITTO_DIFFUSERS,
    EDITTO_TRAINING_STATE,
    EDITTO_WEIGHTS,
    CheckpointFiles,
    Triplet,
)

log = logging.getLogger(__name__)
BASE = "base"  # the id of the untrained weights


@dataclass
class TrainState:
    step: int = 0
    samples_seen: int = 0
    last_loss: float | None = None


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


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
        gradient_checkpointing: bool = True,
        offload_text_encoder: bool = True,
        eval_draws: int = 4,
        edit_steps: int = 50,
        guidance_scale: float = 5.0,
        seed: int = 0,
    ) -> None:
        if lora_rank and trainable is not None:
            raise ValueError("backends.editto: `trainable` trains layers in full; it needs lora_rank: null")
        self.pipe = load_pipeline("WanVACEPipeline", path, dtype)  # in host memory until it is known to fit
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
        for part in ("transformer", "vae") + (() if self.offload_text_encoder else ("text_encoder",)):
            getattr(self.pipe, part).to(device)
        self.initial = {n: p.detach().cpu().clone() for n, p in self.trained.items()}
        self.inputs = EdittoInputs(self.pipe, device, height, width, self.offload_text_encoder)
        self._fresh_optimizer()
        self.weights_id: str | None = BASE  # which weights the model holds now; None: not to be trusted
        self.state_id: str | None = BASE  # which optimizer/RNG state; None after loading weights alone
        self.lock = threading.Lock()
        name = path.rstrip("/").split("/")[-1]
        method = f"lora{lora_rank}a{lora_alpha or lora_rank}" if lora_rank else "projections"
        # What the trained parameters are: a checkpoint resumes only into the same.
        self.spec = {
            "base_model": name,
            "method": method,
            "targets": lora_targets if lora_rank else list(trainable or CONTEXT_PROJECTIONS),
        }
        # How they are trained: a resume applies these, as configured, over the checkpoint's (with a warning).
        self.settings = {
            "lr": lr,
            "curriculum": asdict(self.curriculum),
            "timestep_shift": timestep_shift,
            "loss_weighting": loss_weighting,
            "size": f"{self.num_frames}x{height}x{width}",
        }
        self.changed_on_resume: dict[str, Any] = {}
        c = self.curriculum
        self.spec_id = (
            f"editto:{name}:{method}:lr{lr}:{self.num_frames}x{height}x{width}:shift{timestep_shift}:"
            f"{loss_weighting}:curriculum{c.start_step}-{c.end_step}{c.shape}"
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
        )
        counts = [sum(p.numel() for p in m.parameters()) for m in (pipe.text_encoder, pipe.vae)]
        peak = estimate(size_of(pipe.transformer, *counts), shape)
        log.info("Editto on %s: %s", self.device, peak.line())
        if self.device.startswith("cuda"):
            free, total = torch.cuda.mem_get_info(torch.device(self.device))
            refused = refusal(peak, shape, self.device, free / 2**30, total / 2**30)
            if refused:
                raise ValueError(refused)
        return peak

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

    def train_step(self, triplet: Triplet) -> float:
        drop = self.curriculum.drop_probability(self.state.step)
        keep_reference = bool(torch.rand((), generator=self.generator) >= drop)
        condition = self.condition(triplet, keep_reference)
        loss = self.flow_matching_loss(triplet, condition, self.schedule.draw(self.generator), self.generator)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.state.step += 1
        self.state.samples_seen += 1
        self.state.last_loss = loss.item()
        return self.state.last_loss

    @raises_out_of_device_memory
    def train(
        self,
        triplets: list[Triplet],
        steps: int,
        resume: CheckpointFiles | None,
        save_to: Path,
        heldout: list[Triplet] | None = None,
    ) -> dict[str, Any]:
        """`steps` steps from `resume` (None: the base model), then the held-out flow-matching loss. A failure
        anywhere leaves the model marked untrusted: the next call starts again from a checkpoint."""
        if not triplets:
            raise ValueError("no training samples")
        with self.lock:
            if resume is None and (self.weights_id, self.state_id) != (BASE, BASE):
                self.reset()
            elif resume is not None and resume.id != self.state_id:
                self.restore(resume)
            self.weights_id = self.state_id = None  # moved from here on, until saved
            log.info("Editto round of %d steps on %s: %s", steps, self.device, self.memory.line())
            picks = [int(k) for k in torch.randint(len(triplets), (steps,), generator=self.generator)]
            self.inputs.prompts.clear()  # this round's instructions only: they live in host memory
            heldout = heldout or []
            self.inputs.encode_prompts({triplets[k].instruction for k in picks} | {t.instruction for t in heldout})
            losses = [self.train_step(triplets[k]) for k in picks]
            card = self.save(save_to)
            held = [self.eval_loss(t) for t in heldout]
            card.update(
                mean_loss=float(np.mean(losses)),
                heldout_flow_losses=held,
                heldout_flow_loss=float(np.mean(held)) if held else None,
            )
            (save_to / EDITTO_CARD).write_text(json.dumps(card, indent=2))
            self.weights_id = self.state_id = sha256_file(save_to / EDITTO_WEIGHTS)
            self.changed_on_resume = {}  # said on the round that resumed; the next continues as it is
            return card

    @raises_out_of_device_memory
    def edit(
        self, source: np.ndarray, instruction: str, checkpoint: CheckpointFiles, seed: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Editto at inference, as infer_ditto.py runs it: the clip's first `num_frames` frames (crop-resized)
        as VACE context, the instruction as prompt, no reference. Returns (those source frames, the edit)."""
        h, w = self.height, self.width
        window = self.inputs.window(source, self.num_frames)
        with self.lock:
            if checkpoint.id != self.weights_id:
                self.weights_id = self.state_id = None
                self._load_weights(checkpoint.weights)
                self.weights_id = checkpoint.id
            self.inputs.encode_prompts({instruction, ""})
            with torch.inference_mode():
                frames = self.pipe(
                    video=to_pil(window),
                    mask=[Image.new("L", (w, h), 255)] * len(window),
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

    def save(self, folder: Path) -> dict[str, Any]:
        folder.mkdir(parents=True, exist_ok=True)
        state = {n: p.detach().cpu().contiguous() for n, p in self.trained.items()}
        save_file(state, folder / EDITTO_WEIGHTS)
        exported = lora_scaled(state, self.lora_scale) if self.lora else state
        save_file(diffusers_names(exported, self.lora), folder / EDITTO_DIFFUSERS)
        save_file(diffsynth_names(exported), folder / EDITTO_DIFFSYNTH)
        torch.save(
            {
                "optimizer": self.optimizer.state_dict(),
                "generator": self.generator.get_state(),
                **asdict(self.state),
                "spec": self.spec,
                "settings": self.settings,
            },
            folder / EDITTO_TRAINING_STATE,
        )
        card = {
            **asdict(self.state),
            **self.settings,
            "spec": self.spec,
            "reference_drop_probability": self.curriculum.drop_probability(self.state.step),
            "trained_parameters": len(self.trained),
            "trained_values": sum(p.numel() for p in self.trained.values()),
            "estimated_peak_gib": round(self.memory.peak_gib, 1),
            "changed_on_resume": self.changed_on_resume,
            "base_model": self.spec_id,
            "consumers": {name: asdict(c) for name, c in consumers(self.lora).items()},
        }
        (folder / EDITTO_CARD).write_text(json.dumps(card, indent=2))
        return card

    def _load_weights(self, weights: Path) -> None:
        saved = load_file(weights)
        missing = sorted(set(self.trained) - set(saved))
        if missing:
            raise ValueError(f"{weights} lacks {len(missing)} trained parameters, e.g. {missing[0]}")
        with torch.no_grad():
            for name, param in self.trained.items():
                param.copy_(saved[name])

    def restore(self, checkpoint: CheckpointFiles) -> None:
        """Weights, optimizer, RNG and step of a checkpoint: training continues as if never stopped. The
        learning rate and curriculum are the configured ones, applied on purpose: where the checkpoint was
        trained with others, a warning names them and the card records them."""
        if checkpoint.training_state is None:
            raise ValueError(f"checkpoint {checkpoint.id} has no training state to resume from")
        extra = torch.load(checkpoint.training_state, weights_only=True)
        saved_spec = extra.get("spec")
        if saved_spec is not None and saved_spec != self.spec:
            raise ValueError(
                f"checkpoint {checkpoint.id[:12]} was trained as {saved_spec}, not as backends.editto now says "
                f"({self.spec}): resume it with the settings it was trained with, or train from the base model"
            )
        self.weights_id = self.state_id = None
        self._load_weights(checkpoint.weights)
        self.optimizer.load_state_dict(extra["optimizer"])
        for group in self.optimizer.param_groups:  # load_state_dict brought back the saved rate
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
