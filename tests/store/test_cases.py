"""A case folder is read with its paths resolved (relative to the folder, or absolute), and a malformed one is
refused in one line that names the row and the fault."""

from __future__ import annotations

from pathlib import Path

import pytest

from store.cases import CASES_FILE, CaseFolderError, read_cases, write_cases

CATEGORIES = ("global_style", "text")
HEADER = "source,edited,instruction,category,label,note"


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    for name in ("src.mp4", "a.mp4", "b.mp4", "a.png"):
        (tmp_path / name).write_bytes(b"x")
    return tmp_path


def write(folder: Path, *lines: str) -> Path:
    (folder / CASES_FILE).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def test_cases_resolve_relative_and_absolute_paths_and_read_the_optional_columns(folder: Path) -> None:
    absolute = folder / "b.mp4"
    write(
        folder,
        f"{HEADER},edited_keyframe,target_description",
        "src.mp4,a.mp4,Make it sepia.,global_style,accept,fine,a.png,A sepia scene.",
        f"src.mp4,{absolute},Make it sepia.,global_style,reject,'-weak,,",
        "src.mp4,a.mp4,Add a title.,text,,unlabelled,,",
    )
    first, second, third = read_cases(folder, CATEGORIES)
    assert first.source_path == folder / "src.mp4" and first.edited == "a.mp4"
    assert first.edited_keyframe_path == folder / "a.png" and first.target_description == "A sepia scene."
    assert second.edited_path == absolute and second.edited_keyframe is None
    assert second.note == "-weak"  # the apostrophe our CSV writers put before a formula character is gone
    assert (first.label, second.label, third.label) == ("accept", "reject", None)
    assert [c.row for c in (first, second, third)] == [2, 3, 4]


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ((HEADER, "src.mp4,gone.mp4,Make it sepia.,global_style,accept,"), r"row 2: edited 'gone.mp4' is not a file"),
        ((HEADER, "src.mp4,a.mp4,Make it sepia.,global_style,maybe,"), r"row 2: label 'maybe' is not accept or reject"),
        ((HEADER, "src.mp4,a.mp4,Make it sepia.,weather,accept,"), r"row 2: category 'weather' is not one of"),
        (("source,edited,instruction,label,note", "src.mp4,a.mp4,x,accept,"), r"missing column category \(a case"),
        ((HEADER,), r"cases.csv: holds no cases"),
        ((HEADER, "src.mp4,a.mp4,,text,accept,"), r"row 2: instruction is empty"),
    ],
)
def test_a_malformed_folder_is_refused_in_one_line_naming_the_fault(
    folder: Path, lines: tuple[str, ...], message: str
) -> None:
    with pytest.raises(CaseFolderError, match=message) as err:
        read_cases(write(folder, *lines), CATEGORIES)
    assert "\n" not in str(err.value) and str(folder) in str(err.value)


def test_many_faults_are_counted_after_the_first_few(folder: Path) -> None:
    rows = [f"src.mp4,gone{k}.mp4,Make it sepia.,global_style,accept," for k in range(5)]
    with pytest.raises(CaseFolderError, match=r"row 4: .*gone2.*\(and 2 more\)$"):
        read_cases(write(folder, HEADER, *rows), CATEGORIES)


def test_calibrating_needs_a_label_on_every_case(folder: Path) -> None:
    write(folder, HEADER, "src.mp4,a.mp4,Make it sepia.,global_style,,")
    assert read_cases(folder, CATEGORIES)[0].label is None
    with pytest.raises(CaseFolderError, match=r"row 2: no label \(calibrating needs accept or reject"):
        read_cases(folder, CATEGORIES, labelled=True)


def test_a_folder_without_cases_csv_says_so(tmp_path: Path) -> None:
    with pytest.raises(CaseFolderError, match=r"no cases.csv in it"):
        read_cases(tmp_path, CATEGORIES)
    with pytest.raises(CaseFolderError, match=r"not a folder"):
        read_cases(tmp_path / "missing", CATEGORIES)


def test_written_cases_read_back_as_written(folder: Path) -> None:
    row = {"source": "src.mp4", "edited": "a.mp4", "instruction": "=Make it sepia.", "category": "text"}
    write_cases(folder, [{**row, "label": "accept", "note": "-", "edited_keyframe": "a.png"}])
    (case,) = read_cases(folder, CATEGORIES)
    assert (case.instruction, case.note, case.edited_keyframe) == ("=Make it sepia.", "-", "a.png")
    assert (folder / CASES_FILE).read_text().splitlines()[0] == f"{HEADER},edited_keyframe"
