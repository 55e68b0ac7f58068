"""What a backend of each step must do. Tools depend on these, never on a concrete backend."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np


class OutOfDeviceMemory(Exception):  # noqa: N818 -- a condition, named as the user reads it
    """A backend ran out of device memory. The agent may retry the step at a higher memory_level."""


@dataclass(frozen=True)
class PlanRequest:
    caption: str
    system_prompt: str
    user_prompt: str
    vocabulary: dict[str, Any]  # the rule planner's phrasings; an LLM ignores it
    avoid: list[str]  # instructions already used for this clip
    clip_seed: int  # one seed per clip, so that all its episodes draw from one order of instructions
    slot: int  # this attempt's place in that order: episodes of a clip never draw the same slot
    category: str = ""  # the edit category asked for; the rule planner draws from its phrasings only
    # The answer's JSON schema, for endpoints that decode under one (structured output); others ignore it.
    answer_schema: dict[str, Any] | None = None
    # Earlier answers that failed validation, each with the re-ask that told the planner why, oldest first.
    corrections: tuple[Correction, ...] = ()
    frames: np.ndarray | None = None  # uint8 [T,H,W,3], the source clip, for a planner that sees it


@dataclass(frozen=True)
class Correction:
    answer: str  # what the planner answered
    reask: str  # the rendered message naming what was wrong with it


@dataclass(frozen=True)
class ModelReply:
    text: str  # the raw answer: a JSON object as text; the tool validates it
    # What the call cost and how it went (latency_s, prompt_tokens, completion_tokens, transport_retries,
    # response_format); empty for a backend that calls no model.
    usage: dict[str, Any] = field(default_factory=dict)


class BackendUnavailableError(RuntimeError):
    """A backend's model could not be reached (an endpoint, after its own retries); `usage` says what was tried."""

    def __init__(self, message: str, usage: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.usage = usage or {}


# An answer schema is a JSON Schema dict, made by the tool from the pydantic model that parses the answer.
# A model backend decodes under it (its answer then always parses); a metric backend has nothing to decode.
AnswerSchema = dict[str, Any]


@dataclass(frozen=True)
class CaptionRequest:
    frames: np.ndarray  # uint8 [T,H,W,3]
    fps: float
    prompt: str  # the rendered caption template; the metric captioner ignores it
    answer_schema: AnswerSchema | None = None
    corrections: tuple[Correction, ...] = ()  # earlier answers that failed validation, with their re-asks


@dataclass(frozen=True)
class JudgeRequest:
    source: np.ndarray  # uint8 [H,W,3] image or [T,H,W,3] video
    edited: np.ndarray
    prompt: str  # the rendered rubric; metric judges ignore it
    instruction: str
    category: str | None = None  # the edit's category: a local edit is judged on leaving the rest alone
    answer_schema: AnswerSchema | None = None
    corrections: tuple[Correction, ...] = ()  # earlier answers that failed validation, with their re-asks


# Edits that change part of the frame; the rest are global. Judges hold them to different standards.
LOCAL_CATEGORIES = frozenset({"local_replace", "local_add", "local_remove", "local_attribute", "text"})
# Edits that live on the screen, not in the scene (a subtitle, a caption): they hold still while the scene moves.
SCREEN_CATEGORIES = frozenset({"text"})


@dataclass(frozen=True)
class Triplet:
    """One accepted sample as Editto trains on it."""

    source: np.ndarray  # uint8 [T,H,W,3]: the VACE context video
    edited: np.ndarray  # uint8 [T,H,W,3]: the target
    reference: np.ndarray  # uint8 [H,W,3]: the edited key frame
    instruction: str


@dataclass(frozen=True)
class TripletFiles:
    """One accepted sample as its files: the trainer reads a sample only when it draws it, so a round over
    many samples holds few in memory, and each data-parallel worker reads only its share from the shared
    store."""

    source: Path  # the VACE context video
    edited: Path  # the target video
    reference: Path  # the edited key frame (an image)
    instruction: str


# An Editto checkpoint's files, as the trainer writes them and the published folder holds them.
EDITTO_WEIGHTS, EDITTO_TRAINING_STATE, EDITTO_CARD = "editto.safetensors", "training_state.pt", "card.json"
# ... and the trained weights again, in the names diffusers and DiffSynth-Studio load (models/editto_formats.py).
EDITTO_DIFFUSERS, EDITTO_DIFFSYNTH = "editto_diffusers.safetensors", "editto_diffsynth.safetensors"


@dataclass(frozen=True)
class CheckpointFiles:
    """An Editto checkpoint as two files; `id` names its weights (their sha256), so a backend can tell
    whether they are the ones it holds."""

    id: str
    weights: Path  # the trained parameters, safetensors
    training_state: Path | None  # optimizer, RNG and step; None when only editing with the weights


class Captioner(Protocol):
    spec_id: str
    reads_prompts: bool  # whether it reads the rendered prompt (a model); a metric captioner measures the frames
    frames_shown: int  # frames of a video it shows the model as separate images (an endpoint); 0: the video whole

    def caption(self, request: CaptionRequest) -> ModelReply:
        """The raw answer, a JSON object {"caption": ...} as text, and its usage. The tool validates it. Raises
        BackendUnavailableError when the model cannot be reached."""
        ...


class CategoryUnfitError(ValueError):
    """No edit of the asked category fits this clip (nothing to recolour, no room for text, all used)."""


class Planner(Protocol):
    spec_id: str
    sees_frames: bool  # whether it reads request.frames (a vision-language model); others get the caption only
    reads_prompts: bool  # whether it reads the rendered prompts (a model); the rule planner reads the vocabulary

    def plan(self, request: PlanRequest) -> ModelReply:
        """The raw answer and its usage: a plan, or {"does_not_fit": reason}, as JSON text. Raises
        BackendUnavailableError when the planner cannot be reached, CategoryUnfitError when it knows without
        asking a model that no edit of request.category fits the clip (nothing to recolour, no room for text,
        every phrasing used), ValueError when the request cannot be answered otherwise."""
        ...


# memory_level: 0 runs as configured; after an out-of-memory error the agent retries at 1, 2, ... and a
# backend spends less memory at each (a smaller working size, a tiled VAE). A video step is also handed half the
# frames per level (a shorter clip: tools/frame_window.py). Backends with nothing to save ignore it.


class ImageEditor(Protocol):
    spec_id: str

    def edit(self, image: np.ndarray, instruction: str, seed: int, memory_level: int = 0) -> np.ndarray: ...


class DepthEstimator(Protocol):
    spec_id: str

    def estimate(self, frames: np.ndarray) -> np.ndarray:
        """float32 [T,H,W] in [0,1], one normalisation for the whole clip (no flicker)."""
        ...


class VideoPropagator(Protocol):
    spec_id: str

    def frames_made(self, frames: int) -> int:
        """How many frames it makes of a clip `frames` long, in one video, at most `frames` (most backends all of
        them; Wan 4k+1, at most its num_frames). It is handed that many consecutive frames: time is never
        resampled, so no frame is ever stretched or dropped within the clip it makes."""
        ...

    def propagate(
        self,
        source: np.ndarray,
        edited_keyframe: np.ndarray,
        keyframe_index: int,
        depth: np.ndarray | None,
        prompt: str,
        seed: int,
        memory_level: int = 0,
        control_strength: float | None = None,
        category: str = "",
    ) -> np.ndarray:
        """The edited video, the source's shape (source has frames_made(len(source)) frames). control_strength
        weighs the control video (depth) in the generation, 1 fully; None when there is none. category says what
        kind of edit the key frame carries (a subtitle, an object's colour, a style); a backend that follows the
        prompt alone may ignore it."""
        ...


@dataclass(frozen=True)
class VideoLatents:
    """A generated video as its VAE's latents, before the decode: what an enhancer with the same VAE starts from
    instead of encoding the decoded video again (a VAE encode saved, and the decode -> 8 bits -> encode round
    trip's loss). Latents mean the same video only to a VAE of the same latent space: `space` is the VAE's
    z_dim, latents_mean, latents_std and scale factors, compared whole before they are used."""

    latents: np.ndarray  # float [C, T', H', W'], normalised by the space's latents_mean and latents_std
    space: dict[str, Any]
    height: int  # the video they decode to, at the generator's working size
    width: int
    frames: int


@runtime_checkable
class LatentPropagator(VideoPropagator, Protocol):
    """A propagator that also hands on its video's latents."""

    def propagate_latents(
        self,
        source: np.ndarray,
        edited_keyframe: np.ndarray,
        keyframe_index: int,
        depth: np.ndarray | None,
        prompt: str,
        seed: int,
        memory_level: int = 0,
        control_strength: float | None = None,
        category: str = "",
    ) -> tuple[np.ndarray, VideoLatents]:
        """propagate()'s video, and the latents it was decoded from."""
        ...


class VideoEnhancer(Protocol):
    spec_id: str

    def frames_made(self, frames: int) -> int:
        """As VideoPropagator.frames_made: how many frames of a video `frames` long it enhances in one pass."""
        ...

    def enhance(
        self, video: np.ndarray, source: np.ndarray, prompt: str, seed: int, memory_level: int = 0
    ) -> np.ndarray:
        """The video enhanced, its shape (video has frames_made(len(video)) frames)."""
        ...


@runtime_checkable
class LatentEnhancer(VideoEnhancer, Protocol):
    """An enhancer that can start from a generator's latents instead of encoding the decoded video."""

    def latents_refused(self, latents: VideoLatents) -> str | None:
        """Why these latents cannot be its start (another latent space, another working size), or None."""
        ...

    def enhance_latents(
        self, latents: VideoLatents, height: int, width: int, prompt: str, seed: int, memory_level: int = 0
    ) -> np.ndarray:
        """As enhance() of the video the latents decode to, at height x width (that video's size)."""
        ...


class Judge(Protocol):
    spec_id: str
    # The criteria a backend scores whatever the rubric asks (a metric judge measures its own); None: it
    # scores the criteria the rubric lists, as the request's answer schema requires.
    criteria: tuple[str, ...] | None
    reads_prompts: bool  # whether it reads the rendered rubric (a model); a metric judge measures the edit
    frames_shown: int  # frames of a video it shows the model as separate images (an endpoint); 0: the video whole

    def judge(self, request: JudgeRequest) -> ModelReply:
        """The raw answer, a JSON object {"scores": {...}, "reasons": {...}}, and its usage. The tool validates
        it. Raises BackendUnavailableError when the model cannot be reached."""
        ...


class VideoTextScorer(Protocol):
    spec_id: str

    def score(self, frames: np.ndarray, text: str) -> dict[str, float]:
        """Named scores of a video against a description (CLIP-T, CLIP-F)."""
        ...


class EdittoModel(Protocol):
    spec_id: str

    def train(
        self,
        examples: list[TripletFiles],
        steps: int,
        resume: CheckpointFiles | None,
        save_to: Path,
        heldout: list[TripletFiles] | None = None,
    ) -> dict[str, Any]:
        """Train `steps` optimizer steps of the global batch from `resume` (None: from the base model) and
        write editto.safetensors, training_state.pt, card.json and the exports for diffusers and DiffSynth-Studio
        into `save_to`; then the deterministic flow-matching loss of each `heldout` sample, with the edited
        reference frame and without it. Returns the card."""
        ...

    def edit(
        self,
        source: np.ndarray,
        instruction: str,
        checkpoint: CheckpointFiles,
        seed: int,
        reference: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Edit from the instruction, and the edited reference frame where one is given (None: the
        instruction alone, as Editto is meant to be used): (the frames of `source` Editto edits, at its size,
        and their edit, of the same shape)."""
        ...
