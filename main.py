"""The Ditto agent's command line. A bare call runs the factory:

    python main.py --budget-gpu-days 100

Commands read what it did: traces, trace, prompts, report, export, train, verify; judges measures the judges. Each
lives in cli/; this file puts them together."""

from __future__ import annotations

import os

import typer

from cli import export, judges, prompts, report, run, traces, train, verify
from cli.render import error_line
from cli.signals import exit_past_running_tools

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
app.callback(invoke_without_command=True)(run.run)
app.add_typer(prompts.app, name="prompts")
app.add_typer(judges.app, name="judges")
app.command("train")(train.train)
app.command("traces")(traces.traces)
app.command("trace")(traces.trace)
app.command("report")(report.report)
app.command("export")(export.export)
app.command("verify")(verify.verify)


def main() -> None:
    """The command line, with the faults any command may meet said in one line (a damaged store), and an exit
    that leaves no episode thread to Python's shutdown (cli/signals.py)."""
    from store.engine import StoreDamaged

    try:
        try:
            app()
        except StoreDamaged as err:
            error_line(str(err))
            raise SystemExit(1) from None
    except SystemExit as end:
        exit_past_running_tools(end.code)
        raise


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
