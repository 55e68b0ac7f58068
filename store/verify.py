"""`verify`: every artifact and every dataset file checked against the sha256 it was recorded with, and for
each that differs, what to do about it; `repair` does it. An artifact is named by its sha256; a dataset file's
is in its sample's record (record.json and the Sample row)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import delete
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from store.artifacts import ArtifactStore, sha256_file
from store.dataset import SAMPLE_FILES, place_file
from store.tables import Artifact, Sample

QUARANTINE = "artifacts-changed"  # under --out: changed artifacts that no intact copy can restore


@dataclass(frozen=True)
class Mismatch:
    """A file whose bytes are not those recorded for it, and what restores it."""

    path: Path
    problem: str  # 'is missing' | 'changed since it was written'
    ref: str  # the artifact it should hold
    is_artifact: bool
    intact_copy: Path | None  # a file elsewhere in the store with the recorded bytes, to restore it from

    def fix(self, out: Path) -> str:
        if self.intact_copy is not None:
            return f"restore it as a copy of {self.intact_copy}"
        if not self.is_artifact:
            return "no intact copy is left in the store: exports leave this sample out"
        if self.problem == "is missing":
            return "forget it: the tool calls that made it run again when a run needs it"
        return f"move it to {out / QUARANTINE}: the tool calls that made it run again when a run needs it"


@dataclass
class Verification:
    artifacts: int = 0  # artifacts checked
    dataset_files: int = 0  # dataset files checked
    unrecorded: int = 0  # dataset files whose record names no sha256 (samples made before records named all)
    mismatches: list[Mismatch] = field(default_factory=list)


def sample_files(engine: Engine, dataset_dir: Path) -> Iterator[tuple[Path, str | None]]:
    """(dataset file, the artifact ref its record names, or None) of every sample of every run."""
    with Session(engine) as s:
        rows = s.exec(select(Sample.dataset_dir, Sample.record_json).order_by(col(Sample.created_at)))
        for folder, record_json in rows:
            record = json.loads(record_json)
            by_name = {SAMPLE_FILES[role]: ref for role, ref in record["artifacts"].items()}
            for name in record["files"]:
                yield dataset_dir / folder / name, by_name.get(name)


def verify_store(engine: Engine, out: Path) -> Verification:
    """Reads every file once: each artifact, then each dataset file (a copy of an artifact)."""
    store, dataset_dir = ArtifactStore(out, engine), out / "dataset"
    found = Verification()
    artifacts: dict[str, str | None] = {}  # ref -> None when intact, else the problem
    with Session(engine) as s:
        refs = list(s.exec(select(Artifact.id)))
    for ref in refs:
        artifacts[ref] = problem_of(store.path(ref), ref)
        found.artifacts += 1
    intact: dict[str, Path] = {}  # ref -> an intact dataset copy
    broken: list[tuple[Path, str, str]] = []
    for path, ref in sample_files(engine, dataset_dir):
        if ref is None:
            found.unrecorded += 1
            continue
        found.dataset_files += 1
        if (problem := problem_of(path, ref)) is None and is_hard_link(path, store.path(ref)):
            broken.append((path, ref, "is a hard link to its artifact (an earlier version's)"))
        elif problem is None:
            intact.setdefault(ref, path)
        else:
            broken.append((path, ref, problem))
    for ref, problem in artifacts.items():
        if problem is not None:
            found.mismatches.append(Mismatch(store.path(ref), problem, ref, True, intact.get(ref)))
    for path, ref, problem in broken:
        source = store.path(ref) if artifacts.get(ref, "is missing") is None else intact.get(ref)
        found.mismatches.append(Mismatch(path, problem, ref, False, source))
    return found


def is_hard_link(path: Path, artifact: Path) -> bool:
    """Whether the dataset file and the artifact are one file: editing one would change the other."""
    return artifact.is_file() and path.samefile(artifact)


def problem_of(path: Path, ref: str) -> str | None:
    if not path.is_file():
        return "is missing"
    return None if sha256_file(path) == ref.split(".")[0] else "changed since it was written"


def repair(engine: Engine, out: Path, mismatches: list[Mismatch]) -> int:
    """Does what each mismatch's fix says: artifacts first, so that a dataset file restored from an artifact
    gets the artifact's restored bytes. Returns how many files it restored."""
    store, restored = ArtifactStore(out, engine), 0
    for m in sorted(mismatches, key=lambda m: not m.is_artifact):
        if m.intact_copy is not None:
            store.restore(m.ref, m.intact_copy) if m.is_artifact else place_file(m.intact_copy, m.path)
            restored += 1
        elif m.is_artifact:
            if m.path.is_file():
                (out / QUARANTINE).mkdir(exist_ok=True)
                shutil.move(m.path, out / QUARANTINE / m.path.name)
            with Session(engine) as s:  # no row without its file: a call that made it runs again when needed
                s.exec(delete(Artifact).where(col(Artifact.id) == m.ref))  # type: ignore[call-overload]
                s.commit()
    return restored
