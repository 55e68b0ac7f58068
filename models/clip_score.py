"""The paper's automatic scores of an edited video through transformers' CLIP: CLIP-T, the mean cosine
similarity (x100) of each frame's image embedding with the target description's text embedding, and
CLIP-F, the mean cosine similarity (x100) of consecutive frames' image embeddings (temporal consistency)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from models.frames import torch_dtype


class ClipScorer:
    def __init__(self, path: str, device: str = "cuda", dtype: str = "float16", batch_size: int = 16) -> None:
        from transformers import CLIPModel, CLIPProcessor

        self.device, self.batch_size = device, batch_size
        self.processor = CLIPProcessor.from_pretrained(path)
        self.model = CLIPModel.from_pretrained(path, dtype=torch_dtype(dtype)).to(device).eval()
        self.spec_id = self.identity(path)

    @staticmethod
    def identity(path: str, **_: Any) -> str:
        return f"clip:{path.rstrip('/').split('/')[-1]}"

    def _embed(self, frames: np.ndarray) -> torch.Tensor:
        out = []
        for start in range(0, len(frames), self.batch_size):
            inputs = self.processor(images=list(frames[start : start + self.batch_size]), return_tensors="pt")
            pixels = inputs["pixel_values"].to(self.device, self.model.dtype)
            with torch.inference_mode():
                # transformers 5 returns the projected embedding as the output's pooler_output
                out.append(self.model.get_image_features(pixel_values=pixels).pooler_output.float())
        return torch.nn.functional.normalize(torch.cat(out), dim=-1)

    def score(self, frames: np.ndarray, text: str) -> dict[str, float]:
        images = self._embed(frames)
        tokens = self.processor(text=[text], return_tensors="pt", padding=True, truncation=True).to(self.device)
        with torch.inference_mode():
            text_embedding = self.model.get_text_features(**tokens).pooler_output.float()
        words = torch.nn.functional.normalize(text_embedding, dim=-1)
        clip_t = float((images @ words.T).mean()) * 100
        clip_f = float((images[1:] * images[:-1]).sum(-1).mean()) * 100 if len(images) > 1 else 100.0
        return {"CLIP-T": round(clip_t, 4), "CLIP-F": round(clip_f, 4)}
