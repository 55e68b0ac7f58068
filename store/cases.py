"""Case folders: labelled triplets that measure the judges. A folder holds `cases.csv` with the columns
source, edited, instruction, category, label, note (and optionally edited_keyframe and target_description);
paths are relative to the folder, or absolute. `judges score` runs the judges on every case, `judges
calibrate` compares their decisions with the labels; the labelled set (bench/judges.py) and the report's
spot checks write such folders."""

from __future__ import annotations

import csv
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from pathlib import Path

from store.dataset import FORMULA_PREFIXES, write_csv

CASES_FILE = "cases.csv"
REQUIRED_COLUMNS = ("source", "edited", "instruction", "category", "label", "note")
OPTIONAL_COLUMNS = ("edited_keyframe", "target_description")
LABELS = ("accept", "reject")
SHOWN_PROBLEMS = 3  # a malformed folder's line names this many problems, then counts the rest


class CaseFolderError(ValueError):
    """A case folder that cannot be read; the message is one line naming the folder, the row and the fault."""


@dataclass(frozen=True)
class Case:
    row: int  # the line of cases.csv (the header is line 1)
    source: str  # as cases.csv gives it
    edited: str
    instruction: str
    category: str
    label: str | None  # accept | reject; None where the cell is empty (judges score needs no label)
    note: str
    source_path: Path  # resolved against the folder
    edited_path: Path
    edited_keyframe: str | None = None  # an edited key frame (an image), for the key-frame judge
    edited_keyframe_path: Path | None = None
    target_description: str = ""  # what the edited video shows; empty: the instruction stands for it


def unescape_cell(cell: str) -> str:
    """A cell as it was before spreadsheet_safe: our CSV writers put an apostrophe before a formula character."""
    return cell[1:] if cell.startswith("'") and cell[1:2] and cell[1:].startswith(FORMULA_PREFIXES) else cell


def resolve(folder: Path, given: str) -> Path:
    path = Path(given).expanduser()
    return path if path.is_absolute() else folder / path


def read_cases(folder: Path, categories: Collection[str], labelled: bool = False) -> list[Case]:
    """Every case of `folder`, its paths resolved and checked. `labelled`: every case must carry a label.
    Raises CaseFolderError, one line naming what is wrong and where."""
    path = Path(folder) / CASES_FILE
    if not Path(folder).is_dir():
        raise CaseFolderError(f"--cases {folder}: not a folder")
    try:
        with open(path, encoding="utf-8-sig", newline="") as fh:
            reader = csv.DictReader(fh)
            columns = [c.strip() for c in reader.fieldnames or []]
            missing = [c for c in REQUIRED_COLUMNS if c not in columns]
            if missing:
                raise CaseFolderError(
                    f"{path}: missing column{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
                    f"(a case folder's cases.csv has the columns {','.join(REQUIRED_COLUMNS)})"
                )
            rows = [
                (line, {k.strip(): unescape_cell((v or "").strip()) for k, v in raw.items() if k is not None})
                for line, raw in enumerate(reader, start=2)
            ]
    except FileNotFoundError:
        raise CaseFolderError(f"--cases {folder}: no {CASES_FILE} in it") from None
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise CaseFolderError(f"{path}: cannot be read as CSV ({err})") from None
    if not rows:
        raise CaseFolderError(f"{path}: holds no cases")
    cases, problems = [], []
    for line, cells in rows:
        found = row_problems(Path(folder), cells, categories, labelled)
        problems += [f"row {line}: {p}" for p in found]
        if not found:
            cases.append(to_case(Path(folder), line, cells))
    if problems:
        more = f" (and {len(problems) - SHOWN_PROBLEMS} more)" if len(problems) > SHOWN_PROBLEMS else ""
        raise CaseFolderError(f"{path}: " + "; ".join(problems[:SHOWN_PROBLEMS]) + more)
    return cases


def row_problems(folder: Path, cells: dict[str, str], categories: Collection[str], labelled: bool) -> list[str]:
    problems = [f"{c} is empty" for c in ("source", "edited", "instruction", "category") if not cells.get(c)]
    for column in ("source", "edited", "edited_keyframe"):
        if cells.get(column) and not resolve(folder, cells[column]).is_file():
            problems.append(f"{column} {cells[column]!r} is not a file ({resolve(folder, cells[column])})")
    category, label = cells.get("category", ""), cells.get("label", "")
    if category and category not in categories:
        problems.append(f"category {category!r} is not one of the config's ({', '.join(sorted(categories))})")
    if label and label not in LABELS:
        problems.append(f"label {label!r} is not accept or reject")
    elif labelled and not label:
        problems.append("no label (calibrating needs accept or reject on every case)")
    return problems


def to_case(folder: Path, line: int, cells: dict[str, str]) -> Case:
    keyframe = cells.get("edited_keyframe") or None
    return Case(
        row=line,
        source=cells["source"],
        edited=cells["edited"],
        instruction=cells["instruction"],
        category=cells["category"],
        label=cells.get("label") or None,
        note=cells.get("note", ""),
        source_path=resolve(folder, cells["source"]),
        edited_path=resolve(folder, cells["edited"]),
        edited_keyframe=keyframe,
        edited_keyframe_path=resolve(folder, keyframe) if keyframe else None,
        target_description=cells.get("target_description", ""),
    )


def write_cases(folder: Path, rows: Iterable[dict[str, str]]) -> Path:
    """cases.csv in `folder`, with the required columns and whichever optional ones the rows use."""
    rows = list(rows)
    used = [c for c in OPTIONAL_COLUMNS if any(r.get(c) for r in rows)]
    path = Path(folder) / CASES_FILE
    write_csv(path, [*REQUIRED_COLUMNS, *used], [{c: r.get(c, "") for c in (*REQUIRED_COLUMNS, *used)} for r in rows])
    return path
