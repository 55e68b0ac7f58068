"""What Editto is fed, the same at training and at inference: the first frames of a clip, crop-resized to
the model's size (as DiffSynth-Studio's data loader and infer_ditto.py take them), encoded by the VAE, and
the instruction encoded by the text encoder, which visits the device only while it encodes."""

from __future__ import annotations

from itertools import islice
from pathlib import Path
from typing import Any

import av
import numpy as np
import torch
from PIL import Image

from models.frames import consecutive, crop_resize, to_pil
from models.protocols import Triplet, TripletFiles

MAX_PROMPT_TOKENS = 512  # what WanVACEPipeline.__call__ encodes a prompt to, at training as at inference


def read_first_frames(path: Path, count: int) -> np.ndarray:
    """The first `count` frames of a video (all of a shorter one), uint8 RGB: only what Editto takes is
    decoded, so a round reads each sample's window, not its whole clip."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = [f.to_ndarray(format="rgb24") for f in islice(container.decode(stream), count)]
    if not frames:
        raise ValueError(f"{path}: no video frames")
    return np.stack(frames)


def load_triplet(files: TripletFiles, num_frames: int) -> Triplet:
    reference = np.array(Image.open(files.reference).convert("RGB"))  # writable: torch takes it as it is
    return Triplet(
        read_first_frames(files.source, num_frames),
        read_first_frames(files.edited, num_frames),
        reference,
        files.instruction,
    )


class EdittoInputs:
    def __init__(self, pipe: Any, device: str, height: int, width: int, offload_text_encoder: bool) -> None:
        self.pipe, self.device, self.height, self.width = pipe, device, height, width
        self.offload_text_encoder = offload_text_encoder
        self.prompts: dict[str, torch.Tensor] = {}  # instruction -> its embedding, trimmed, in host memory

    def encode_prompts(self, instructions: set[str]) -> None:
        """The text encoder visits the device once for all the instructions not yet encoded, and leaves it
        before the transformer trains."""
        new = sorted(instructions - set(self.prompts))
        if not new:
            return
        encoder = self.pipe.text_encoder
        if self.offload_text_encoder:
            encoder.to(self.device)
        with torch.no_grad():
            embeds = self.pipe.encode_prompt(
                new, do_classifier_free_guidance=False, max_sequence_length=MAX_PROMPT_TOKENS, device=self.device
            )[0]
        if self.offload_text_encoder:
            encoder.to("cpu")
            torch.cuda.empty_cache()
        for text, embed in zip(new, embeds, strict=True):
            kept = int((embed.abs().sum(-1) > 0).nonzero().max()) + 1 if embed.abs().sum() > 0 else 0
            self.prompts[text] = embed[:kept].cpu()  # the rest is the pipeline's zero padding

    def prompt_embeds(self, instruction: str) -> torch.Tensor:
        self.encode_prompts({instruction})
        embed = self.prompts[instruction]
        padded = torch.cat([embed, embed.new_zeros(MAX_PROMPT_TOKENS - len(embed), embed.shape[1])])
        return padded[None].to(self.device)

    def window(self, frames: np.ndarray, count: int) -> np.ndarray:
        """The first `count` frames (fewer, 4k+1, from a shorter clip), crop-resized."""
        return crop_resize(consecutive(frames, count), self.width, self.height)

    def condition(self, triplet: Triplet, num_frames: int, keep_reference: bool) -> tuple[torch.Tensor, torch.Tensor]:
        pipe, h, w = self.pipe, self.height, self.width
        count = min(num_frames, len(triplet.source), len(triplet.edited))  # the same frames of both clips
        source = self.window(triplet.source, count)
        t = len(source)
        references = [to_pil(crop_resize(triplet.reference[None], w, h))[0]] if keep_reference else []
        mask = [Image.new("L", (w, h), 255)] * t
        video, mask, refs = pipe.preprocess_conditions(
            to_pil(source), mask, references or None, 1, h, w, t, torch.float32, self.device
        )
        context = pipe.prepare_video_latents(video, mask, refs, None, self.device)
        context = torch.cat([context, pipe.prepare_masks(mask, refs, None)], dim=1)
        target = self.encode(self.window(triplet.edited, t))
        if keep_reference:  # the reference frame leads the latent sequence, as at inference
            target = torch.cat([self.encode(crop_resize(triplet.reference[None], w, h)), target], dim=2)
        return context, target

    def encode(self, frames: np.ndarray) -> torch.Tensor:
        vae = self.pipe.vae
        video = torch.from_numpy(frames).permute(3, 0, 1, 2)[None].float().to(self.device) / 127.5 - 1.0
        latents = vae.encode(video).latent_dist.mode()
        mean = torch.tensor(vae.config.latents_mean, device=self.device).view(1, -1, 1, 1, 1)
        std = torch.tensor(vae.config.latents_std, device=self.device).view(1, -1, 1, 1, 1)
        return (latents - mean) / std
