"""A round of Editto training data-parallel on N devices with Ray Train: a TorchTrainer whose N workers each
build the same model, shard the transformer (frozen weights, adapters and AdamW's state) across themselves
with FSDP2's fully_shard, one block at a time, and train the same global batch, each on its share of the
samples (models/editto_trainer.global_step). FSDP2 rather than DeepSpeed through accelerate: it is torch's
own (torch.distributed.fsdp, nothing else to install or pin), it shards a model in place, module by module,
which keeps diffusers' model class, PEFT's adapters and gradient checkpointing as they are, and the
trainer's single-process code path is the same code with one process; DeepSpeed would wrap the model and
the optimizer in an engine of its own and take over the steps.

Faults are Ray Train's: every `checkpoint_every` steps the first worker writes the whole trained state (the
checkpoint format of a finished round, without the exports) and reports it; a worker that dies (killed, out
of memory, its node lost) makes Ray Train start the worker group again, up to `max_failures` times, and
the new workers continue from that checkpoint. The round is one tool call, charged once for the time its
workers were held. Ray itself is the caller's: this module uses the Ray the process is connected to."""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from models.protocols import EDITTO_CARD, EDITTO_TRAINING_STATE, EDITTO_WEIGHTS, CheckpointFiles, TripletFiles

if TYPE_CHECKING:
    from models.editto_trainer import EdittoTrainer

log = logging.getLogger(__name__)
ROUND_FILE = "round.json"  # in a mid-round checkpoint: the step the round ends at, its losses so far
REFUSED_FILE = "refused.txt"  # a worker's one-line refusal (the model does not fit its device)


def worker_resources(trainer: EdittoTrainer) -> tuple[bool, dict[str, float]]:
    """(whether the workers use GPUs, what each reserves). A worker on a GPU holds it and one CPU to feed
    it; on the cpu and tiny profiles a worker holds no GPU and an equal share of what CPUs the cluster has
    left, so N of them fit a small machine."""
    import ray

    if trainer.device.startswith("cuda"):
        return True, {"GPU": 1.0, "CPU": 1.0}
    free = ray.available_resources().get("CPU", 0.0)
    return False, {"CPU": round(min(1.0, free / trainer.workers), 4)}


def check_room(trainer: EdittoTrainer, resources: dict[str, float]) -> None:
    """Ray leaves a worker it cannot place pending for ever: refuse in one line instead, naming what is free."""
    import ray

    context = ray.get_runtime_context()  # in an actor (a ToolHost), what it reserves itself; a driver has none
    held = context.get_assigned_resources() if context.get_actor_id() else {}
    free, total = ray.available_resources(), ray.cluster_resources()
    refused = room_refusal(trainer.workers, trainer.global_batch, resources, free, total, held)
    if refused:
        raise ValueError(refused)


def room_refusal(
    workers: int,
    global_batch: int,
    each: dict[str, float],
    free: dict[str, float],
    total: dict[str, float],
    held: dict[str, float],
) -> str | None:
    """Why the cluster cannot hold a round of `workers` workers that reserve `each` (None where it can), in
    one line that names the keys to change: the widest round that fits and divides the global batch, or the
    pools' share of the cluster. `held`: what the process that starts the round reserves itself; under
    --executor ray the train_editto actor keeps its GPU for the held-out evaluation (tools/train_editto.py:
    Ray cannot lend an actor's GPU to a worker), so the workers need theirs beside it."""
    for resource, share in each.items():
        need, have = share * workers, free.get(resource, 0.0)
        if need > 0 and have + 1e-6 >= need:
            continue
        widths = [n for n in range(workers - 1, 0, -1) if global_batch % n == 0 and 0 < n * share <= have + 1e-6]
        width = f"set backends.editto workers to {widths[0]}" if widths else "train on 1 device (workers: 1)"
        own = f", {held[resource]:g} of them this round's own for its held-out evaluation" if held.get(resource) else ""
        return (
            f"Editto training on {workers} workers needs {need:g} {resource} free and the Ray cluster has {have:g} "
            f"({total.get(resource, 0.0):g} in all, the rest held by the factory's pools{own}): {width} (or train "
            f"--gpus N; a width that divides global_batch {global_batch}), or leave {need:g} {resource} out of "
            f"the pools (pools.<tool>.actors, or a --gpus below the cluster's)"
        )
    return None


def fit_round(
    trainer: EdittoTrainer, examples: list[TripletFiles], steps: int, resume: CheckpointFiles | None, save_to: Path
) -> dict[str, Any]:
    """Train the round on `trainer.workers` Ray Train workers; the whole checkpoint and its card land in
    `save_to`, which every worker must see (the shared store). Returns the card."""
    import ray
    from ray.train import CheckpointConfig, FailureConfig, LoggingConfig, RunConfig, ScalingConfig, TrainingFailedError
    from ray.train.torch import TorchTrainer

    if not ray.is_initialized():
        raise ValueError(f"Editto training on {trainer.workers} workers needs Ray: none is connected")
    use_gpu, each = worker_resources(trainer)
    check_room(trainer, each)
    # Workers run in a folder of Ray's: every path they get is absolute (--out may be given relative).
    save_to = save_to.resolve()
    examples = [
        replace(e, source=e.source.resolve(), edited=e.edited.resolve(), reference=e.reference.resolve())
        for e in examples
    ]
    if resume is not None:
        resume = replace(
            resume,
            weights=resume.weights.resolve(),
            training_state=resume.training_state and resume.training_state.resolve(),
        )
    options = dict(trainer.options)
    if Path(options["path"]).exists():  # a local folder (a hub id with --allow-download stays as it is)
        options["path"] = str(Path(options["path"]).resolve())
    config = {"options": options, "examples": examples, "steps": steps, "resume": resume, "save_to": save_to}
    fit = TorchTrainer(
        train_worker,
        train_loop_config=config,
        scaling_config=ScalingConfig(num_workers=trainer.workers, use_gpu=use_gpu, resources_per_worker=each),
        run_config=RunConfig(
            name="editto",
            storage_path=str(save_to / ".ray-train"),
            failure_config=FailureConfig(max_failures=trainer.max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=2),
            # Ray Train says INFO once a step a worker ("Reporting training result"): 16k steps x 64 workers.
            # The first worker logs the round's progress at each checkpoint instead (report_checkpoint).
            logging_config=LoggingConfig(log_level="WARNING"),
        ),
    )
    try:
        fit.fit()
    except TrainingFailedError as err:
        raise RuntimeError(f"Editto training on {trainer.workers} workers failed: {first_line(err)}") from err
    if (refused := save_to / REFUSED_FILE).is_file():
        raise ValueError(refused.read_text().strip())
    return json.loads((save_to / EDITTO_CARD).read_text())


def first_line(err: BaseException) -> str:
    """A failed worker's error in one line: the last line of what it raised (the exception itself)."""
    failures = getattr(err, "worker_failures", None)
    cause = next(iter(failures.values())) if failures else err
    lines = [line for line in str(cause).splitlines() if line.strip() and not line.startswith("Training failed")]
    return lines[-1].strip() if lines else type(cause).__name__


def train_worker(config: dict[str, Any]) -> None:
    """One Ray Train worker: its copy of the model, sharded with the others, trained to the round's last
    step from the latest of: the round's own checkpoint (after a worker failure), the round's starting
    checkpoint, the base model."""
    import ray.train
    from ray.train.torch import get_device

    from models.editto_trainer import EdittoTrainer, Sharding, round_card

    quiet_worker()
    context = ray.train.get_context()
    rank, size = context.get_world_rank(), context.get_world_size()
    device = get_device()
    options = {**config["options"], "device": str(device) if device.type == "cuda" else "cpu"}
    save_to: Path = config["save_to"]
    refused = ""
    try:
        trainer = EdittoTrainer(**options)
    except ValueError as err:  # the memory estimate: every worker stops, none is retried
        refused = str(err)
    if agreed_sum(torch.tensor(float(bool(refused))), device) > 0:
        if refused:
            (save_to / REFUSED_FILE).write_text(refused)
        return
    trainer.shard(
        Sharding(rank, size, lambda t: agreed_sum(t, device), lambda sync: set_gradient_sync(trainer, sync)),
        lambda transformer: shard_transformer(transformer, device, size),
    )
    losses, restarts, end = restore_round(trainer, config)
    if restarts:
        log.warning("Editto worker %d: the round continues from its checkpoint at step %d", rank, restarts[-1])
    examples: list[TripletFiles] = config["examples"]
    while trainer.state.step < end:
        losses.append(trainer.global_step(examples))
        if trainer.state.step < end and trainer.state.step % trainer.checkpoint_every == 0:
            report_checkpoint(trainer, {"end_step": end, "losses": losses, "resumed_at": restarts}, rank)
    card = trainer.save(save_to)
    if rank == 0:
        card.update(round_card(losses, restarts))
        (save_to / EDITTO_CARD).write_text(json.dumps(card, indent=2))


def quiet_worker() -> None:
    """N workers print what one process would N times: the libraries' loading bars are left out, and Ray
    Train's line per report and worker (its module logs under its file's path, past LoggingConfig's level).
    FSDP2 warns that a Wan block returns a view that an in-place op would cut from its pre-backward hook;
    diffusers' WanVACE forward adds block outputs out of place, and tests/e2e/test_training.py checks that
    2 workers' steps are 1 worker's."""
    import warnings

    import diffusers
    import transformers
    from ray.train.v2._internal.execution import context as ray_train_context

    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.disable_progress_bar()
    logging.getLogger(ray_train_context.__file__).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=r"FSDP2-wrapped module .* returned a view tensor")


def restore_round(trainer: EdittoTrainer, config: dict[str, Any]) -> tuple[list[float], list[int], int]:
    """(the round's losses so far, the steps restarts resumed from, the step the round ends at)."""
    import ray.train

    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            progress = json.loads((Path(folder) / ROUND_FILE).read_text())
            trainer.restore(
                CheckpointFiles("round", Path(folder) / EDITTO_WEIGHTS, Path(folder) / EDITTO_TRAINING_STATE)
            )
        return progress["losses"], [*progress["resumed_at"], trainer.state.step], progress["end_step"]
    if config["resume"] is not None:
        trainer.restore(config["resume"])
    return [], [], trainer.state.step + config["steps"]


def report_checkpoint(trainer: EdittoTrainer, progress: dict[str, Any], rank: int) -> None:
    """The round so far, whole, reported to Ray Train by the first worker (every worker gathers)."""
    import ray.train

    with tempfile.TemporaryDirectory() as folder:
        trainer.save(Path(folder), exports=False)
        checkpoint = None
        if rank == 0:
            (Path(folder) / ROUND_FILE).write_text(json.dumps(progress))
            checkpoint = ray.train.Checkpoint.from_directory(folder)
            log.info(
                "Editto round: step %d of %d, loss %.4f, saved",
                trainer.state.step,
                progress["end_step"],
                progress["losses"][-1],
            )
        ray.train.report({"step": trainer.state.step, "loss": progress["losses"][-1]}, checkpoint=checkpoint)


def shard_transformer(transformer: torch.nn.Module, device: torch.device, size: int) -> None:
    """FSDP2 over all workers: each Wan block (the main ones and the VACE context ones) a unit of its own,
    gathered whole only while it runs, and the rest (embeddings, head) as the root unit. Blocks hold frozen
    bf16 weights and float32 adapters side by side; FSDP2 keeps each in its dtype."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    mesh = init_device_mesh(device.type, (size,))
    for block in (*transformer.blocks, *transformer.vace_blocks):  # type: ignore[attr-defined]
        fully_shard(block, mesh=mesh)
    fully_shard(transformer, mesh=mesh)


def set_gradient_sync(trainer: EdittoTrainer, sync: bool) -> None:
    trainer.pipe.transformer.set_requires_gradient_sync(sync)


def agreed_sum(value: torch.Tensor, device: torch.device) -> torch.Tensor:
    import torch.distributed as dist

    summed = value.to(device)
    dist.all_reduce(summed)
    return summed.cpu()
