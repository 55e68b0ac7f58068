"""Every command README and docs/ show is one the code takes: each `python main.py ...` parses against the
command line as it is (its command, flags and their types), a run's profile, config file and flags make a valid
config, and each bench they name has its main run in CI. Placeholders (DIR, N, [optional], a|b) are filled in."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import typer

from agent.config import load_config
from cli.run import config_flags
from main import app

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
PLACEHOLDERS = {  # what a placeholder stands for, as a value the flag's type takes
    "N": "2",
    "P": "cpu",
    "ID": "run-20261206-000000",
    "RUN_ID:train-001": "run-20261206-000000:train-001",
    "EPISODE_ID": "run-20261206-000000:00001",
    "DIR": "dir",
    "FILE": "file.yaml",
    "HEAD_IP:6379": "10.0.0.1:6379",
}


def code_lines(page: Path) -> list[str]:
    """The lines of a page's code blocks (indented or fenced), continuation lines joined."""
    lines, fenced = [], False
    for line in page.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif fenced or line.startswith("    "):
            lines.append(line.strip())
    return re.sub(r"\\\n", " ", "\n".join(lines)).splitlines()


def shown(page: Path) -> list[str]:
    """What a page shows as commands: its code blocks' lines and its inline code."""
    return code_lines(page) + re.findall(r"`([^`\n]+)`", page.read_text(encoding="utf-8"))


def commands(program: str, pages: list[Path] = PAGES) -> list[tuple[str, list[str]]]:
    """(page, arguments) of every `program ...` shown, as a user would type it with the placeholders filled in:
    a comment and `...` dropped, [optional] parts given, the first of a|b|c."""
    found = []
    for page in pages:
        for line in shown(page):
            for part in line.split("&&"):
                words = part.split("  #")[0].split(" #")[0].replace("...", "").replace("[", "").replace("]", "")
                _, sep, args = words.partition(program)
                if sep:
                    tokens = [PLACEHOLDERS.get(t, t.split("|")[0]) for t in shlex.split(args)]
                    found.append((page.name, tokens))
    return found


MAIN = commands("python main.py ")


def parse(args: list[str]) -> Any:
    """The context the command line makes of `args` (nothing runs): typer's own parser, command by command."""
    cmd, ctx, rest = typer.main.get_command(app), None, args
    while True:
        ctx = cmd.make_context(cmd.name or "main.py", rest, parent=ctx)
        if not hasattr(cmd, "resolve_command"):
            return ctx
        rest = [*ctx._protected_args, *ctx.args]
        if not rest:
            return ctx
        _, cmd, rest = cmd.resolve_command(ctx, rest)


def test_the_pages_show_commands() -> None:
    assert len(MAIN) > 20 and any(args[:1] == ["--budget-gpu-days"] for _, args in MAIN)


@pytest.mark.parametrize(("page", "args"), MAIN, ids=[" ".join(a)[:60] for _, a in MAIN])
def test_each_main_command_shown_parses_and_a_run_makes_a_valid_config(page: str, args: list[str]) -> None:
    ctx = parse(args)
    assert not ctx.args, f"{page}: python main.py {' '.join(args)}: {ctx.args} taken by no option"
    if ctx.parent is None and not args[0:1] == ["--prompts"]:  # the main job: its config is what the run reads
        params = ctx.params
        if params["config"] is not None:
            assert (ROOT / params["config"]).is_file(), f"{page}: {params['config']} is not in the repository"
            params = params | {"config": ROOT / params["config"]}
        load_config(params["profile"], params["config"], config_flags(params))


def test_each_bench_shown_runs_its_main_in_ci() -> None:
    tests = "\n".join(p.read_text(encoding="utf-8") for p in (ROOT / "tests").rglob("test_*.py"))
    pages = [*PAGES, ROOT / "bench" / "RESULTS.md"]
    benches = {args[0] for _, args in commands("python -m bench.", pages)}
    assert "faults" in benches
    for module in benches:
        assert f'"bench.{module}"' in tests or f'bench("{module}"' in tests, (
            f"python -m bench.{module}: no test runs it"
        )


def anchors(page: Path) -> set[str]:
    """The anchors a page's headings get (as GitHub makes them)."""
    headings = re.findall(r"(?m)^#+ (.+)$", page.read_text(encoding="utf-8"))
    return {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in headings}


def test_every_link_between_the_pages_resolves() -> None:
    """README's contents and the pages' cross-references: the file exists, and the heading a link names."""
    broken = []
    for page in PAGES:
        for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text(encoding="utf-8")):
            if target.startswith(("http://", "https://")):
                continue
            file, _, anchor = target.partition("#")
            dest = (page.parent / file).resolve() if file else page
            if not dest.exists() or (anchor and dest.suffix == ".md" and anchor not in anchors(dest)):
                broken.append(f"{page.name}: {target}")
    assert not broken
