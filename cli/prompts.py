"""`prompts list|show|copy|diff`: the prompt templates a run renders, and overrides of them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cli.options import one_line_errors
from cli.render import console, templates_table

app = typer.Typer(help="List, show, copy and diff the prompt templates.")
PromptsOpt = Annotated[Path | None, typer.Option("--prompts")]


@app.command("list")
def list_templates(prompts: PromptsOpt = None) -> None:
    """Each template's name, origin (built-in or override) and short hash."""
    from prompts.loader import PromptBook

    with one_line_errors():
        console.print(templates_table(PromptBook(prompts)))


@app.command("show")
def show(name: str, prompts: PromptsOpt = None) -> None:
    """Print a template's resolved text."""
    from prompts.loader import PromptBook

    with one_line_errors():
        console.print(PromptBook(prompts).source(name).text, markup=False)


@app.command("copy")
def copy(name: str, dest: Annotated[Path, typer.Argument(help="Override folder.")]) -> None:
    """Copy a built-in template into an override folder, for editing; run with --prompts FOLDER."""
    from prompts.loader import PromptBook

    with one_line_errors():
        console.print(f"copied to {PromptBook(None).copy(name, dest)}")


@app.command("diff")
def diff(name: str, prompts: Annotated[Path, typer.Option("--prompts")]) -> None:
    """Compare an override with the built-in."""
    from prompts.loader import PromptBook

    with one_line_errors():
        console.print(PromptBook(prompts).diff(name) or "identical to the built-in", markup=False)
