"""`verify`: every artifact and dataset file checked against its recorded sha256, with what to do about each
that differs; --repair does it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cli.options import DbOpt, OutOpt, open_store
from cli.render import console, escape


def verify(
    out: OutOpt = Path("out"),
    db: DbOpt = None,
    repair: Annotated[
        bool, typer.Option("--repair", metavar="", help="Do what each line says (restore, or set aside).")
    ] = False,
) -> None:
    """Check every artifact and every dataset file against the sha256 it was recorded with, and say what to do
    about each that differs (exit 1 when one does)."""
    from store.verify import repair as repair_files
    from store.verify import verify_store

    engine = open_store(out, db)
    found = verify_store(engine, out)
    for m in found.mismatches:
        console.print(f"[red]{escape(str(m.path))}[/] {m.problem}: {escape(m.fix(out))}")
    unrecorded = f"; {n} dataset files made before records named their sha256" if (n := found.unrecorded) else ""
    console.print(
        f"{found.artifacts} artifacts and {found.dataset_files} dataset files checked: "
        f"{len(found.mismatches)} to fix{unrecorded}"
    )
    if not found.mismatches:
        return
    if not repair:
        console.print(f"python main.py verify --out {out} --repair does what each line says")
        raise typer.Exit(1)
    restored = repair_files(engine, out, found.mismatches)
    left = verify_store(engine, out).mismatches
    console.print(f"repaired: {restored} files restored; {len(left)} still differ")
    if left:
        raise typer.Exit(1)
