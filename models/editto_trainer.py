"""Editto: Wan VACE fine-tuned on accepted triplets with Wan's flow-matching objective (Ditto step 8).
Only the VACE context branch's projections train by default. The modality curriculum drops the edited
reference frame with a probability that rises over training, until the model edits from the instruction
alone. Checkpoints are safetensors of the trained weights plus the optimizer and RNG state, so a resumed
run continues bit-exactly."""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from models.frames import resample, resize, to_pil, wan_frame_count
from models.pipelines import load_pipeline

CONTEXT_PROJECTIONS = (r"^vace_blocks\.\d+\.proj_(in|out)\.",)  # the paper's choice: context projections only


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


@dataclass(frozen=True)
class Triplet:
    source: np.ndarray  # uint8 [T,H,W,3]: the VACE context video
    edited: np.ndarray  # uint8 [T,H,W,3]: the target
    reference: np.ndarray  # uint8 [H,W,3]: the edited key frame
    instruction: str


@dataclass
class TrainState:
    step: int = 0
    samples_seen: int = 0
    last_loss: float | None = None


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
        curriculum: Curriculum | None = None,
        seed: int = 0,
    ) -> None:
        self.pipe = load_pipeline("WanVACEPipeline", path, dtype).to(device)
        self.pipe.vae.to(torch.float32)
        self.device, self.height, self.width = device, height, width
        self.num_frames = wan_frame_count(num_frames)
        self.curriculum = curriculum or Curriculum()
        transformer = self.pipe.transformer
        transformer.requires_grad_(False)
        patterns = [re.compile(p) for p in trainable]
        self.trained = {n: p for n, p in transformer.named_parameters() if any(r.search(n) for r in patterns)}
        if not self.trained:
            raise ValueError(f"no transformer parameter matches {trainable}")
        for p in self.trained.values():
            p.requires_grad_(True)
        self.optimizer = torch.optim.AdamW(self.trained.values(), lr=lr)
        self.generator = torch.Generator("cpu").manual_seed(seed)
        self.state = TrainState()

    def _condition(self, triplet: Triplet, keep_reference: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        pipe, h, w, t = self.pipe, self.height, self.width, self.num_frames
        source = to_pil(resize(resample(triplet.source, t), w, h))
        references = [to_pil(resize(triplet.reference[None], w, h))[0]] if keep_reference else []
        mask = [to_pil(np.full((1, h, w, 3), 255, np.uint8))[0].convert("L")] * t
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

    def eval_loss(self, triplet: Triplet, keep_reference: bool = False, draws: int = 4, seed: int = 0) -> float:
        """Mean loss over fixed noise draws, so two evaluations compare like with like."""
        generator = torch.Generator("cpu").manual_seed(seed)
        with torch.no_grad():
            return float(
                np.mean([self.flow_matching_loss(triplet, keep_reference, generator).item() for _ in range(draws)])
            )

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        save_file({n: p.detach().cpu().contiguous() for n, p in self.trained.items()}, folder / "editto.safetensors")
        torch.save(
            {"optimizer": self.optimizer.state_dict(), "generator": self.generator.get_state()},
            folder / "training_state.pt",
        )
        card = {
            **asdict(self.state),
            "curriculum": asdict(self.curriculum),
            "reference_drop_probability": self.curriculum.drop_probability(self.state.step),
            "trained_parameters": sorted(self.trained),
        }
        (folder / "card.json").write_text(json.dumps(card, indent=2))

    def load(self, folder: Path) -> None:
        weights = load_file(folder / "editto.safetensors")
        with torch.no_grad():
            for name, param in self.trained.items():
                param.copy_(weights[name])
        extra = torch.load(folder / "training_state.pt", weights_only=True)
        self.optimizer.load_state_dict(extra["optimizer"])
        self.generator.set_state(extra["generator"])
        card = json.loads((folder / "card.json").read_text())
        self.state = TrainState(step=card["step"], samples_seen=card["samples_seen"], last_loss=card["last_loss"])
