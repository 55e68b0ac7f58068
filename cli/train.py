"""`train`: one Editto training round by hand, on a run's accepted samples."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Any

import typer

from cli.options import DbOpt, OutOpt, fail, one_line_errors
from cli.render import console, print_checkpoint_use, print_logs_of, training_table


def train(
    run: Annotated[str | None, typer.Option("--run", help="Train on this run's samples (default: the latest).")] = None,
    steps: Annotated[int | None, typer.Option(help="Training steps (default: the run's training.steps).")] = None,
    out: OutOpt = Path("out"),
    db: DbOpt = None,
    allow_download: Annotated[
        bool, typer.Option("--allow-download", metavar="", help="Fetch hub ids named in backends.")
    ] = False,
    gpus: Annotated[
        int | None,
        typer.Option(
            help="Train data-parallel on N workers with Ray Train (backends.editto workers): N GPUs, or N CPU "
            "workers where Editto runs on the CPU (the cpu and tiny profiles).",
            min=1,
        ),
    ] = None,
    ray_address: Annotated[
        str | None,
        typer.Option(
            help="Ray cluster the workers train on: HOST:PORT, or auto (default: a Ray started for this command).",
            envvar="RAY_ADDRESS",
        ),
    ] = None,
) -> None:
    """Train Editto once on a run's accepted samples, from its last checkpoint, and evaluate it on held-out ones."""
    from agent.config import resolve_run_config
    from agent.training import train_by_hand

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s %(message)s")
    print_logs_of("agent.ray_pools")  # which Ray the workers train on
    flags: dict[str, Any] = {"out": out, "allow_download": allow_download, **({"db_url": db} if db else {})}
    if gpus is not None:
        flags["backends"] = {"editto": {"workers": gpus}}
    if ray_address is not None:
        flags["ray_address"] = ray_address
    with one_line_errors():
        cfg, run_id, _ = resolve_run_config(out, db, run, False, None, None, flags)
        if run_id is None:
            raise fail(f"no run in {db or out / 'ditto.db'}")
        done = train_by_hand(cfg, run_id, steps)
    console.print(training_table([done]))
    print_checkpoint_use(done, cfg.out)
    if done.status != "finished":
        raise typer.Exit(1)
