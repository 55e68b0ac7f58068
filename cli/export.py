"""`export`: a run's accepted samples in the format a trainer reads."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer

from cli.options import DbOpt, OutOpt, fail, one_line_errors, open_store, run_or_latest
from cli.render import console, escape

ExportFormat = Literal["metadata", "diffsynth", "parquet", "webdataset"]


def export(
    out: OutOpt = Path("out"),
    db: DbOpt = None,
    format: Annotated[  # noqa: A002 -- the flag's name
        ExportFormat, typer.Option("--format", metavar="<format>", help="metadata | diffsynth | parquet | webdataset")
    ] = "metadata",
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
    """Export a run's accepted samples (the latest run's unless --run names another; held-out ones marked):
    metadata.csv, DiffSynth-Studio's metadata_vace.csv, Parquet with a dataset card, or WebDataset shards. Every
    file is checked against its recorded sha256 first. Running it again is cheap."""
    from agent.training import heldout_sample_ids
    from store.dataset import dataset_run, write_metadata_csv
    from store.export import export_samples, run_export

    engine, dataset_dir = open_store(out, db), out / "dataset"
    run_id = run_or_latest(engine, run, out)
    which = f"the samples of run {run_id}" + (", the latest (--run picks another)" if run is None else "")
    if to is None and format in ("metadata", "diffsynth") and run_id != dataset_run(engine):
        raise fail(f"--run {run_id}: {dataset_dir} indexes the latest run; give --to DIR to export an earlier run")
    if format == "metadata":
        n = write_metadata_csv(engine, dataset_dir, run_id, to)
        return console.print(f"{n} samples listed in {(to or dataset_dir) / 'metadata.csv'}: {which}")
    dest = to or (dataset_dir if format == "diffsynth" else out / format)
    with one_line_errors(prefix=f"export --format {format}: ", extra="export"):
        samples, broken = export_samples(engine, dataset_dir, run_id, heldout_sample_ids(engine, run_id))
        result = run_export(format, samples, dataset_dir, dest, embed, shard_size)
    for sample_id, why in (broken | result.skipped).items():
        console.print(f"[yellow]skipped[/] {sample_id}: {escape(why)}")
    console.print(
        f"{result.samples} samples ({sum(s.split == 'heldout' for s in samples)} held out) in {result.path}: "
        f"{result.files_written} files written, {result.files_unchanged} unchanged; {which}"
    )
    if broken:
        raise typer.Exit(1)
