"""Editto: Wan VACE fine-tuned on accepted triplets with Wan's flow-matching objective (Ditto step 8).
Only the VACE context branch's projections train by default (or LoRA adapters on chosen context-branch
linears). The modality curriculum drops the edited reference frame with a probability that rises over
training, until the model edits from the instruction alone. Checkpoints are safetensors of the trained
weights plus the optimizer and RNG state, so a resumed run continues bit-exactly."""

from __future__ import annotations

import hashlib
import json
import math
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
from models.frames import match_clip, resample, resize, to_pil, to_uint8, wan_frame_count
from models.pipelines import load_pipeline
from models.protocols import EDITTO_CARD, EDITTO_TRAINING_STATE, EDITTO_WEIGHTS, CheckpointFiles, Triplet

CONTEXT_PROJECTIONS = (r"^vace_blocks\.\d+\.proj_(in|out)\.",)  # the paper's choice: context projections only
# The released Editto script's LoRA targets: the context blocks' attention and feed-forward linears.
CONTEXT_LINEARS = r"vace_blocks\.\d+\.(attn[12]\.(to_q|to_k|to_v|to_out\.0)|ffn\.net\.(0\.proj|2))"
BASE = "base"  # the id of the untrained weights


@dataclass(frozen=True)
class Curriculum:
    """Probability of dropping the reference frame at a training step: 0 before start, 1 after end."""

    start_step: int = 0
    end_step: int = 5000  # the released Editto anneals the reference away over the first 5k steps
    shape: str = "linear"  # linear | cosine

    def drop_probability(self, step: int) -> float:
        if step <= self.start_step:
            return 0.0
        if step >= self.end_step:
            return 1.0
        x = (step - self.start_step) / (self.end_step - self.start_step)
        return x if self.shape == "linear" else 0.5 - 0.5 * math.cos(math.pi * x)


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
        trainable: tuple[str, ...] = CONTEXT_PROJECTIONS,
        lora_rank: int | None = None,
        lora_targets: str = CONTEXT_LINEARS,
        curriculum_start: int = 0,
        curriculum_end: int = 5000,
        curriculum_shape: Literal["linear", "cosine"] = "linear",
        gradient_checkpointing: bool = False,
        edit_steps: int = 50,
        guidance_scale: float = 5.0,
        seed: int = 0,
    ) -> None:
        self.pipe = load_pipeline("WanVACEPipeline", path, dtype).to(device)
        self.pipe.vae.to(torch.float32)
        self.pipe.set_progress_bar_config(disable=True)
        self.device, self.height, self.width = device, height, width
        self.num_frames = wan_frame_count(num_frames)
        self.curriculum = Curriculum(curriculum_start, curriculum_end, curriculum_shape)
        self.edit_steps, self.guidance_scale, self.lr, self.seed = edit_steps, guidance_scale, lr, seed
        transformer = self.pipe.transformer
        transformer.requires_grad_(False)
        if lora_rank:
            from peft import LoraConfig

            transformer.add_adapter(LoraConfig(r=lora_rank, lora_alpha=lora_rank, target_modules=lora_targets))
            trainable = (r"\.lora_[AB]\.",)
        if gradient_checkpointing:
            transformer.enable_gradient_checkpointing()
        patterns = [re.compile(p) for p in trainable]
        self.trained = {n: p for n, p in transformer.named_parameters() if any(r.search(n) for r in patterns)}
        if not self.trained:
            raise ValueError(f"no transformer parameter matches {trainable}")
        for p in self.trained.values():
            p.requires_grad_(True)
        self.initial = {n: p.detach().cpu().clone() for n, p in self.trained.items()}
        self._fresh_optimizer()
        self.weights_id: str | None = BASE  # which weights the model holds now
        self.state_id: str | None = BASE  # which optimizer/RNG state; None after loading weights alone
        self.lock = threading.Lock()
        name = path.rstrip("/").split("/")[-1]
        method = f"lora{lora_rank}" if lora_rank else "projections"
        self.spec_id = f"editto:{name}:{method}:lr{lr}:{self.num_frames}x{height}x{width}"

    def _fresh_optimizer(self) -> None:
        self.optimizer = torch.optim.AdamW(self.trained.values(), lr=self.lr)
        self.generator = torch.Generator("cpu").manual_seed(self.seed)
        self.state = TrainState()

    def reset(self) -> None:
        """Back to the base model, as if just loaded."""
        with torch.no_grad():
            for name, param in self.trained.items():
                param.copy_(self.initial[name])
        self._fresh_optimizer()
        self.weights_id = self.state_id = BASE

    def _condition(self, triplet: Triplet, keep_reference: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        pipe, h, w, t = self.pipe, self.height, self.width, self.num_frames
        source = to_pil(resize(resample(triplet.source, t), w, h))
        references = [to_pil(resize(triplet.reference[None], w, h))[0]] if keep_reference else []
        mask = [Image.new("L", (w, h), 255)] * t
        video, mask, refs = pipe.preprocess_conditions(
            source, mask, references or None, 1, h, w, t, torch.float32, self.device
        )
        context = pipe.prepare_video_latents(video, mask, refs, None, self.device)
        context = torch.cat([context, pipe.prepare_masks(mask, refs, None)], dim=1)
        target = self._encode(resize(resample(triplet.edited, t), w, h))
        if keep_reference:  # the reference frame leads the latent sequence, as at inference
            target = torch.cat([self._encode(resize(triplet.reference[None], w, h)), target], dim=2)
        prompt_embeds, _ = pipe.encode_prompt(
            triplet.instruction, do_classifier_free_guidance=False, device=self.device
        )
        return context, target, prompt_embeds

    def _encode(self, frames: np.ndarray) -> torch.Tensor:
        vae = self.pipe.vae
        video = torch.from_numpy(frames).permute(3, 0, 1, 2)[None].float().to(self.device) / 127.5 - 1.0
        latents = vae.encode(video).latent_dist.mode()
        mean = torch.tensor(vae.config.latents_mean, device=self.device).view(1, -1, 1, 1, 1)
        std = torch.tensor(vae.config.latents_std, device=self.device).view(1, -1, 1, 1, 1)
        return (latents - mean) / std

    def flow_matching_loss(self, triplet: Triplet, keep_reference: bool, generator: torch.Generator) -> torch.Tensor:
        """x_t = (1-s) x0 + s noise; the model predicts the velocity noise - x0 (Wan's objective)."""
        with torch.no_grad():
            context, x0, prompt_embeds = self._condition(triplet, keep_reference)
        noise = torch.randn(x0.shape, generator=generator).to(self.device)
        sigma = torch.rand((1,), generator=generator).to(self.device)
        noisy = (1 - sigma) * x0 + sigma * noise
        transformer = self.pipe.transformer
        pred = transformer(
            hidden_states=noisy.to(transformer.dtype),
            timestep=sigma * 1000,
            encoder_hidden_states=prompt_embeds,
            control_hidden_states=context.to(transformer.dtype),
            return_dict=False,
        )[0]
        return torch.nn.functional.mse_loss(pred.float(), (noise - x0).float())

    def train_step(self, triplet: Triplet) -> float:
        drop = self.curriculum.drop_probability(self.state.step)
        keep_reference = bool(torch.rand((), generator=self.generator) >= drop)
        loss = self.flow_matching_loss(triplet, keep_reference, self.generator)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.state.step += 1
        self.state.samples_seen += 1
        self.state.last_loss = loss.item()
        return self.state.last_loss

    @raises_out_of_device_memory
    def train(
        self, triplets: list[Triplet], steps: int, resume: CheckpointFiles | None, save_to: Path
    ) -> dict[str, Any]:
        if not triplets:
            raise ValueError("no training samples")
        with self.lock:
            if resume is None and (self.weights_id, self.state_id) != (BASE, BASE):
                self.reset()
            elif resume is not None and resume.id != self.state_id:
                self.restore(resume)
            losses = []
            for _ in range(steps):
                pick = int(torch.randint(len(triplets), (1,), generator=self.generator))
                losses.append(self.train_step(triplets[pick]))
            card = self.save(save_to)
            card["mean_loss"] = float(np.mean(losses)) if losses else None
            self.weights_id = self.state_id = sha256_file(save_to / EDITTO_WEIGHTS)
            return card

    @raises_out_of_device_memory
    def edit(self, source: np.ndarray, instruction: str, checkpoint: CheckpointFiles, seed: int) -> np.ndarray:
        """Editto at inference: the source clip as VACE context, the instruction as prompt, no reference."""
        h, w, t = self.height, self.width, self.num_frames
        with self.lock:
            if checkpoint.id != self.weights_id:
                self._load_weights(checkpoint.weights)
                self.weights_id, self.state_id = checkpoint.id, None
            with torch.inference_mode():
                frames = self.pipe(
                    video=to_pil(resize(resample(source, t), w, h)),
                    mask=[Image.new("L", (w, h), 255)] * t,
                    prompt=instruction,
                    height=h,
                    width=w,
                    num_frames=t,
                    num_inference_steps=self.edit_steps,
                    guidance_scale=self.guidance_scale,
                    generator=torch.Generator("cpu").manual_seed(seed),
                    output_type="np",
                ).frames[0]
        return match_clip(to_uint8(np.asarray(frames)), source)

    def eval_loss(self, triplet: Triplet, keep_reference: bool = False, draws: int = 4, seed: int = 0) -> float:
        """Mean loss over fixed noise draws, so two evaluations compare like with like."""
        generator = torch.Generator("cpu").manual_seed(seed)
        with torch.no_grad():
            return float(
                np.mean([self.flow_matching_loss(triplet, keep_reference, generator).item() for _ in range(draws)])
            )

    def save(self, folder: Path) -> dict[str, Any]:
        folder.mkdir(parents=True, exist_ok=True)
        save_file({n: p.detach().cpu().contiguous() for n, p in self.trained.items()}, folder / EDITTO_WEIGHTS)
        torch.save(
            {"optimizer": self.optimizer.state_dict(), "generator": self.generator.get_state(), **asdict(self.state)},
            folder / EDITTO_TRAINING_STATE,
        )
        card = {
            **asdict(self.state),
            "curriculum": asdict(self.curriculum),
            "reference_drop_probability": self.curriculum.drop_probability(self.state.step),
            "trained_parameters": len(self.trained),
            "trained_values": sum(p.numel() for p in self.trained.values()),
            "base_model": self.spec_id,
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
        """Weights, optimizer, RNG and step of a checkpoint: training continues as if never stopped."""
        if checkpoint.training_state is None:
            raise ValueError(f"checkpoint {checkpoint.id} has no training state to resume from")
        self._load_weights(checkpoint.weights)
        extra = torch.load(checkpoint.training_state, weights_only=True)
        self.optimizer.load_state_dict(extra["optimizer"])
        self.generator.set_state(extra["generator"])
        self.state = TrainState(extra["step"], extra["samples_seen"], extra["last_loss"])
        self.weights_id = self.state_id = checkpoint.id
