"""Ditto step 8: Editto, the instruction-only video editor, trained on accepted samples (train_editto), and
its edit of a clip from the instruction (and the edited reference frame, where given), which the held-out
evaluation judges (edit_with_editto). Both tools share one resident model, so an evaluation right after
training loads nothing."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from models.protocols import (
    EDITTO_CARD,
    EDITTO_DIFFSYNTH,
    EDITTO_DIFFUSERS,
    EDITTO_TRAINING_STATE,
    EDITTO_WEIGHTS,
    CheckpointFiles,
    EdittoModel,
    TripletFiles,
)
from tools.base import ArtifactRef, BackendSpec, Resources, Tool, ToolContext, ToolError

EXPORTS = (EDITTO_DIFFUSERS, EDITTO_DIFFSYNTH)  # the weights in the names diffusers and DiffSynth-Studio load
CHECKPOINT_FILES = (EDITTO_WEIGHTS, EDITTO_TRAINING_STATE, EDITTO_CARD, *EXPORTS)


class EdittoCheckpoint(BaseModel, frozen=True):
    weights: ArtifactRef  # editto.safetensors
    training_state: ArtifactRef  # training_state.pt: optimizer, RNG and step

    def files(self, ctx: ToolContext, with_state: bool = True) -> CheckpointFiles:
        return CheckpointFiles(
            id=self.weights.split(".")[0],
            weights=ctx.io.path(self.weights),
            training_state=ctx.io.path(self.training_state) if with_state else None,
        )


class TrainingExample(BaseModel, frozen=True, extra="forbid"):
    sample_id: str
    source: ArtifactRef
    edited: ArtifactRef
    reference: ArtifactRef  # the edited key frame
    instruction: str


class TrainEdittoInput(BaseModel, frozen=True, extra="forbid"):
    examples: tuple[TrainingExample, ...]
    steps: int
    resume_from: EdittoCheckpoint | None  # None: from the base model
    heldout: tuple[TrainingExample, ...] = ()  # scored by flow-matching loss after training, never trained on


class TrainEdittoOutput(BaseModel, frozen=True):
    checkpoint: EdittoCheckpoint
    card: dict[str, Any]  # step, samples seen, loss, reference-drop probability, settings, consumers
    exports: dict[str, ArtifactRef]  # file name (EXPORTS) -> the weights in that consumer's names
    heldout_losses: tuple[float, ...]  # per held-out example, in order: deterministic, reference dropped
    heldout_losses_with_reference: tuple[float, ...]  # ... and with the edited reference frame fed


class TrainEditto(Tool):
    name, version = "train_editto", "3"
    Input, Output = TrainEdittoInput, TrainEdittoOutput
    backend_step = "editto"
    used_in = ("training",)
    default_resources = Resources(timeout_s=None)  # a round may rightly take hours: no limit unless the spec sets one

    def __init__(self, config: None = None, spec: BackendSpec | None = None) -> None:
        super().__init__(config, spec)
        # Data-parallel, a round holds its workers' devices for the whole call: charged workers x devices x seconds.
        # The process that starts it keeps one device's share, not the workers': the held-out evaluation (and
        # edit_with_editto, on the same resident model) runs there on the whole model after the round. Under
        # --executor ray that is the pool's actor, whose GPU Ray holds for the actor's life and cannot lend to a
        # worker, so a round of N workers needs N GPUs beside the pools' (editto_parallel.room_refusal says so).
        one, workers = self.resources, (spec or {}).get("workers", 1)
        gpus = one.gpus if one.gpus is not None else one.devices
        self.resources = one.model_copy(update={"devices": one.devices * workers, "gpus": gpus})

    def setup(self, model: EdittoModel) -> None:
        self.model = model

    def __call__(self, inp: TrainEdittoInput, ctx: ToolContext) -> TrainEdittoOutput:
        if not inp.examples:
            raise ToolError("bad_input", "no accepted samples to train on", field="examples")
        if inp.steps < 1:
            raise ToolError("bad_input", f"steps must be at least 1, not {inp.steps}", field="steps")
        examples, heldout = [files_of(e, ctx) for e in inp.examples], [files_of(e, ctx) for e in inp.heldout]
        resume = inp.resume_from.files(ctx) if inp.resume_from else None
        with ctx.io.scratch_dir() as folder:  # in the shared store: data-parallel workers write the checkpoint here
            card = self.model.train(examples, inp.steps, resume, folder, heldout)
            missing = [name for name in CHECKPOINT_FILES if not (folder / name).is_file()]
            if missing:
                raise ToolError("tool_failed", f"the trainer wrote no {', '.join(missing)}", field="checkpoint")
            checkpoint = EdittoCheckpoint(
                weights=ctx.io.adopt_file(folder / EDITTO_WEIGHTS, kind="editto_weights"),
                training_state=ctx.io.adopt_file(folder / EDITTO_TRAINING_STATE, kind="editto_training_state"),
            )
            exports = {name: ctx.io.adopt_file(folder / name, kind="editto_export") for name in EXPORTS}
        losses = tuple(card.get("heldout_flow_losses", ()))
        with_reference = tuple(card.get("heldout_flow_losses_with_reference", ()))
        if not len(losses) == len(with_reference) == len(heldout):
            raise ToolError("tool_failed", f"{len(losses)} held-out losses for {len(heldout)} examples", field="card")
        return TrainEdittoOutput(
            checkpoint=checkpoint,
            card=card,
            exports=exports,
            heldout_losses=losses,
            heldout_losses_with_reference=with_reference,
        )


def files_of(example: TrainingExample, ctx: ToolContext) -> TripletFiles:
    """The sample's files in the store, which the trainer reads where it runs (each data-parallel worker
    reads only the samples it draws)."""
    return TripletFiles(
        ctx.io.path(example.source), ctx.io.path(example.edited), ctx.io.path(example.reference), example.instruction
    )


class EditWithEdittoInput(BaseModel, frozen=True, extra="forbid"):
    checkpoint: EdittoCheckpoint
    clip: ArtifactRef
    instruction: str
    seed: int
    reference: ArtifactRef | None = None  # the edited key frame, fed as VACE's reference; None: instruction alone


class EditWithEdittoOutput(BaseModel, frozen=True):
    edited_video: ArtifactRef
    source_window: ArtifactRef  # the source frames Editto edited, at its size: what the edit is judged against


class EditWithEditto(Tool):
    name, version = "edit_with_editto", "3"
    Input, Output = EditWithEdittoInput, EditWithEdittoOutput
    backend_step = "editto"  # the model train_editto trains: one resident copy
    used_in = ("training",)

    def setup(self, model: EdittoModel) -> None:
        self.model = model

    def __call__(self, inp: EditWithEdittoInput, ctx: ToolContext) -> EditWithEdittoOutput:
        source, fps = ctx.io.read_video(inp.clip)
        reference = ctx.io.read_image(inp.reference) if inp.reference else None
        checkpoint = inp.checkpoint.files(ctx, with_state=False)
        window, edited = self.model.edit(source, inp.instruction, checkpoint, inp.seed, reference)
        if edited.shape != window.shape:
            raise ToolError(
                "tool_failed", f"Editto returned {edited.shape} for frames of {window.shape}", field="edited_video"
            )
        return EditWithEdittoOutput(
            edited_video=ctx.io.write_video(edited, fps, kind="editto_video"),
            source_window=ctx.io.write_video(window, fps, kind="editto_source"),
        )
