"""`judges score|calibrate`: the configured judges run on a case folder (labelled triplets, store/cases.py) without
planning or editing; their decisions compared with the labels, and per-category thresholds fitted to them."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from cli.options import fail, one_line_errors
from cli.render import (
    auc_table,
    calibration_table,
    case_progress,
    case_verdicts_table,
    console,
    escape,
    print_json,
)

if TYPE_CHECKING:
    from agent.config import RunConfig
    from agent.judging import CaseVerdict

app = typer.Typer(help="Measure the judges on a case folder: score it, or calibrate thresholds against its labels.")
CasesOpt = Annotated[
    Path, typer.Option("--cases", help="A case folder: cases.csv (source,edited,instruction,category,label,note).")
]
ProfileOpt = Annotated[str | None, typer.Option(help="cpu | tiny | full")]
ConfigOpt = Annotated[Path | None, typer.Option("--config", help="YAML config file over the profile.")]
PromptsOpt = Annotated[Path | None, typer.Option("--prompts", help="Templates here override the built-ins.")]


def judge_cases(
    cases_dir: Path, profile: str | None, config: Path | None, prompts: Path | None, labelled: bool, quiet: bool
) -> tuple[RunConfig, list[CaseVerdict]]:
    from agent.config import load_config
    from agent.judging import score_cases
    from store.cases import read_cases

    with one_line_errors():
        cfg = load_config(profile, config, {"prompts_dir": prompts} if prompts else None)
        cases = read_cases(cases_dir, cfg.categories, labelled=labelled)
        with case_progress(len(cases), quiet) as advance:
            return cfg, score_cases(cfg, cases, advance)


def score(
    cases: CasesOpt,
    profile: ProfileOpt = None,
    config: ConfigOpt = None,
    prompts: PromptsOpt = None,
    as_json: Annotated[
        bool, typer.Option("--json", metavar="", help="Print a JSON list, one object per case, for scripts.")
    ] = False,
) -> None:
    """Run the configured key-frame and video judges and the pre-filter on every case, and decide each as a run
    would: accepted or not, the scores, the reasons."""
    _, verdicts = judge_cases(cases, profile, config, prompts, labelled=False, quiet=as_json)
    if as_json:
        return print_json([v.as_json() for v in verdicts])
    console.print(case_verdicts_table(verdicts))
    accepted = sum(v.accepted for v in verdicts)
    console.print(f"{accepted} of {len(verdicts)} cases accepted")


def calibrate(
    cases: CasesOpt,
    profile: ProfileOpt = None,
    config: ConfigOpt = None,
    prompts: PromptsOpt = None,
    target_precision: Annotated[
        float,
        typer.Option(
            min=0.0, max=1.0, help="Fit thresholds under which at least this share of the cases accepted are good."
        ),
    ] = 0.95,
    write: Annotated[
        Path | None, typer.Option("--write", help="Write the fitted thresholds here, a config file --config takes.")
    ] = None,
) -> None:
    """Compare the judges' decisions with the labels, per category: precision, recall, confusion matrix, each
    criterion's ROC AUC; and fit per-category thresholds for a target precision (written with --write)."""
    from agent.calibration import calibrate as fit_thresholds
    from agent.calibration import overall, overlay_yaml

    cfg, verdicts = judge_cases(cases, profile, config, prompts, labelled=True, quiet=False)
    fits = fit_thresholds(verdicts, cfg.policy, target_precision)
    console.print(calibration_table(fits, overall(verdicts)))
    console.print(auc_table(fits))
    for fit in fits:
        if fit.note:
            console.print(f"{fit.category}: {escape(fit.note)}")
    if write is None:
        console.print("--write FILE writes the fitted thresholds as a config file (pass it with --config)")
        return
    header = (
        f"Judge thresholds per category, fitted by `judges calibrate` on {len(verdicts)} cases in {cases}\n"
        f"for a precision of {target_precision:g} ({cfg.profile} profile{f', {config}' if config else ''}), "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC. Pass with --config."
    )
    from agent.config import read_yaml

    try:
        write.write_text(overlay_yaml(fits, header, read_yaml(config) if config else {}), encoding="utf-8")
    except OSError as err:
        raise fail(f"--write {write}: {err.strerror or err}") from err
    console.print(f"thresholds written to {write}: python main.py --config {write} ... uses them")


app.command("score")(score)
app.command("calibrate")(calibrate)
