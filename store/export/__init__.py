"""Exports of a run's accepted samples for the loaders people train with: DiffSynth-Studio's CSV, Parquet
with a dataset card (Hugging Face datasets), WebDataset tar shards. Each is idempotent: a second call
copies no file that is already there, and a sample that changed replaces its row."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine

from store.artifacts import sha256_file
from store.dataset import accepted_in_order, atomic_write_bytes, place_file, sample_paths
from store.file_modes import mkstemp

SPLITS = ("train", "heldout")  # heldout: never trained on; Editto is evaluated on them


@dataclass(frozen=True)
class ExportSample:
    id: str
    record: dict[str, Any]
    files: dict[str, Path]  # role -> file in the dataset folder
    relpaths: dict[str, str]  # role -> path relative to the dataset folder
    split: str

    @property
    def digest(self) -> str:
        """Changes when anything exported for this sample changes: its record, files or split."""
        return hashlib.sha256(json.dumps([self.record, self.split], sort_keys=True).encode()).hexdigest()


@dataclass
class ExportResult:
    path: Path  # the index written (CSV, card, or the shard folder)
    samples: int = 0
    files_written: int = 0  # files copied, linked or rewritten by this call
    files_unchanged: int = 0
    skipped: dict[str, str] = field(default_factory=dict)  # sample id -> why it was left out


def export_samples(
    engine: Engine, dataset_dir: Path, run_id: str, heldout_ids: set[str]
) -> tuple[list[ExportSample], dict[str, str]]:
    """(the run's accepted samples in order of acceptance, each with its files and split; sample id -> why it
    is left out). Every file an export reads is checked against the sha256 its record holds first: a sample
    with a file changed or gone since it was committed is left out, with the command that restores it."""
    found, broken = [], {}
    for sample in accepted_in_order(engine, run_id):
        record, relpaths = json.loads(sample.record_json), sample_paths(sample)
        files = {role: dataset_dir / rel for role, rel in relpaths.items()}
        if problems := changed_files(files, record["artifacts"]):
            broken[sample.id] = f"{', '.join(problems)}: python main.py verify --out {dataset_dir.parent} --repair"
            continue
        split = "heldout" if sample.id in heldout_ids else "train"
        found.append(ExportSample(id=sample.id, record=record, files=files, relpaths=relpaths, split=split))
    return found, broken


def changed_files(files: dict[str, Path], refs: dict[str, str]) -> list[str]:
    """'<file> is missing' or '<file> changed since it was written' for each file whose bytes are not those of
    its recorded artifact (a file without a recorded one, of a sample made before records named them all,
    is not checked)."""
    problems = []
    for role, path in files.items():
        if not path.is_file():
            problems.append(f"{path} is missing")
        elif role in refs and sha256_file(path) != refs[role].split(".")[0]:
            problems.append(f"{path} changed since it was written")
    return problems


def same_file(a: Path, b: Path) -> bool:
    if not b.is_file():
        return False
    if os.path.samefile(a, b):
        return True
    return a.stat().st_size == b.stat().st_size and sha256_file(a) == sha256_file(b)


def place_once(src: Path, dest: Path, result: ExportResult) -> None:
    """Link or copy src to dest unless dest already holds the same bytes."""
    if same_file(src, dest):
        result.files_unchanged += 1
        return
    place_file(src, dest)
    result.files_written += 1


def write_if_changed(path: Path, data: bytes, result: ExportResult) -> None:
    if path.is_file() and path.read_bytes() == data:
        result.files_unchanged += 1
        return
    atomic_write_bytes(path, data)
    result.files_written += 1


@contextmanager
def replace_if_changed(path: Path, result: ExportResult) -> Iterator[Path]:
    """A temporary path to write a large file to (streamed, never held in memory); it replaces `path` only
    if its bytes differ, so an unchanged export leaves the file and its time alone."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = mkstemp(dir=str(path.parent), prefix=".tmp-")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        if same_file(tmp, path):
            result.files_unchanged += 1
        else:
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp, path)
            result.files_written += 1
    finally:
        tmp.unlink(missing_ok=True)


def run_export(
    fmt: str, samples: list[ExportSample], dataset_dir: Path, to: Path, embed: bool, shard_size: int
) -> ExportResult:
    """The exporters are imported when used: parquet needs pyarrow (in the base install), webdataset the
    `export` extra."""
    if fmt == "diffsynth":
        from store.export.diffsynth_csv import export_diffsynth

        return export_diffsynth(samples, dataset_dir, to)
    if fmt == "parquet":
        from store.export.parquet import export_parquet

        return export_parquet(samples, to, embed)
    if fmt == "webdataset":
        from store.export.webdataset import export_webdataset

        return export_webdataset(samples, to, shard_size)
    raise ValueError(f"unknown export format {fmt!r}")
