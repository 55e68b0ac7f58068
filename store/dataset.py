"""The dataset folder: one sub-folder per accepted sample (files + record.json) and metadata.csv.
A sample's row and its files are committed together; a rerun of the same commit changes nothing."""

from __future__ import annotations

import csv
import errno
import fcntl
import io
import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Update, func, insert, update
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from store.artifacts import ArtifactStore
from store.file_modes import mkstemp
from store.tables import Episode, Sample, utcnow
from store.traces import episode_lineage, latest_run

METADATA_COLUMNS = [
    "sample_id",
    "source_path",
    "edited_path",
    "edited_keyframe_path",
    "depth_path",
    "instruction",
    "category",
    "target_description",
    "source_clip",
    "scores",
]


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = mkstemp(dir=str(path.parent), prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def place_file(src: Path, dest: Path) -> None:
    """dest becomes a file of its own holding src's bytes, atomically: never a hard link, which would share
    one inode, so that editing or truncating a dataset file would change the artifact it came from. Where
    the file system can (btrfs, XFS, ...), copy_file_range shares the blocks (a reflink, as cp
    --reflink=auto makes) and the copy costs no space until one of the two changes."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".tmp-{dest.name}")  # one name: a copy a kill cut short is overwritten, not left
    try:
        with open(src, "rb") as fin, open(tmp, "wb") as fout:
            copy_bytes(fin.fileno(), fout.fileno(), os.fstat(fin.fileno()).st_size)
            os.fsync(fout.fileno())
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def copy_bytes(src: int, dest: int, size: int) -> None:
    """In the kernel (a reflink where the file system shares blocks), or through Python where the kernel
    cannot copy between these files."""
    try:
        while size > 0 and (n := os.copy_file_range(src, dest, size)) > 0:
            size -= n
    except OSError as err:
        if err.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.EPERM):
            raise
        with open(src, "rb", closefd=False) as fin, open(dest, "wb", closefd=False) as fout:
            shutil.copyfileobj(fin, fout)


# The sample's folder layout, owned here: file name in the dataset folder for each artifact role.
SAMPLE_FILES = {
    "source": "source.mp4",
    "edited": "edited.mp4",
    "edited_keyframe": "edited_keyframe.png",
    "depth": "depth.mp4",
}


@dataclass(frozen=True)
class AcceptedSample:
    """What an accepted episode hands to the dataset: ids, artifact refs (role -> ref) and small text."""

    episode_id: str
    run_id: str
    source_clip: str
    edit: dict[str, str]  # instruction, category, target_description
    scores: dict[str, dict[str, float]]  # judge stage -> criterion -> score, of the accepted attempt
    seeds: dict[str, int]
    caption: str | None
    fps: float
    artifacts: dict[str, str]  # role (a key of SAMPLE_FILES) -> artifact ref; depth only when made
    control_strength: float | None = None  # weight of the depth control in its generation; None: no depth
    # What was lowered to make it fit in memory (memory level per step) and the frames it holds of the source's
    # (a shorter clip at the source's rate, never stretched); None: made as configured, every frame.
    degraded: dict[str, Any] | None = None


def sample_id_of(episode_id: str) -> str:
    return episode_id.replace(":", "-")


def sample_record(sample: AcceptedSample, lineage: dict[str, Any]) -> dict[str, Any]:
    """record.json: the one schema of a sample, read back by metadata.csv, exports and training."""
    return {
        "sample_id": sample_id_of(sample.episode_id),
        "episode_id": sample.episode_id,
        "run_id": sample.run_id,
        "source_clip": sample.source_clip,
        **sample.edit,
        "scores": sample.scores,
        "seeds": sample.seeds,
        "caption": sample.caption,
        "fps": sample.fps,
        "control_strength": sample.control_strength,
        "degraded": sample.degraded,
        "artifacts": dict(sample.artifacts),  # role -> sha256 of each file: Editto's inputs, and what verify checks
        "files": sorted(SAMPLE_FILES[role] for role in sample.artifacts),
        **lineage,
    }


def commit_sample(engine: Engine, artifacts: ArtifactStore, dataset_dir: Path, sample: AcceptedSample) -> str:
    """Write the sample's files, metadata.csv with the sample in it, then its Sample row and the episode's
    status in one transaction, so a killed run leaves an index of every sample it accepted. Returns its id."""
    sample_id = sample_id_of(sample.episode_id)
    folder = dataset_dir / sample_id
    for role, ref in sample.artifacts.items():
        place_file(artifacts.verified_path(ref), folder / SAMPLE_FILES[role])
    record = sample_record(sample, episode_lineage(engine, sample.episode_id))
    atomic_write_bytes(folder / "record.json", json.dumps(record, indent=2, sort_keys=True).encode())
    # metadata.csv lists the sample before its row commits: a kill in between leaves it listed with its
    # files in place, and the rerun of this commit adds the row. Under the lock no other commit interleaves,
    # and the row is made inside it, so that the rows' order of acceptance is the order of the file's lines.
    # Core statements: the ORM's objects cost more than these three statements.
    with index_lock(dataset_dir), engine.begin() as conn:
        row = Sample(
            id=sample_id,
            episode_id=sample.episode_id,
            run_id=sample.run_id,
            dataset_dir=str(folder.relative_to(dataset_dir)),
            record_json=json.dumps(record),
        )
        if conn.execute(select(Sample.id).where(Sample.id == sample_id)).first() is None:
            if dataset_run(engine) == sample.run_id:  # a resumed older run leaves the latest run's index alone
                add_to_metadata_csv(engine, dataset_dir, row)
            conn.execute(insert(Sample), row.model_dump())
        conn.execute(finished(sample.episode_id, "accepted", None, None, sample.edit.get("category")))
    return sample_id


def finished(episode_id: str, status: str, reason: str | None, detail: str | None, category: str | None) -> Update:
    """The statement that ends an episode. Episode.category is what admission chose; what the episode was
    planned as is kept beside it."""
    return (
        update(Episode)
        .where(col(Episode.id) == episode_id)
        .values(
            status=status,
            reason=reason,
            detail=detail,
            planned_category=func.coalesce(category, Episode.planned_category),
            finished_at=func.coalesce(Episode.finished_at, utcnow()),
        )
    )


def discard_episode(engine: Engine, episode_id: str, reason: str, detail: str, category: str | None = None) -> None:
    with engine.begin() as conn:
        conn.execute(finished(episode_id, "discarded", reason, detail, category))


def accepted_in_order(
    engine: Engine, run_id: str | None = None, newest_only: bool = False, oldest_only: bool = False
) -> list[Sample]:
    """In order of acceptance, so that a sample's place (and whether it is held out) never changes;
    `newest_only` / `oldest_only`: the last / first one alone (or none)."""
    query = select(Sample).order_by(col(Sample.created_at), col(Sample.id))
    if newest_only:
        query = select(Sample).order_by(col(Sample.created_at).desc(), col(Sample.id).desc()).limit(1)
    elif oldest_only:
        query = query.limit(1)
    if run_id:
        query = query.where(Sample.run_id == run_id)
    with Session(engine) as s:
        return list(s.exec(query).all())


def sample_paths(sample: Sample) -> dict[str, str]:
    """Role -> path of the sample's file, relative to the dataset folder, for the files it has."""
    files = set(json.loads(sample.record_json)["files"])
    return {role: f"{sample.dataset_dir}/{name}" for role, name in SAMPLE_FILES.items() if name in files}


def metadata_row(sample: Sample, folder: str = "") -> dict[str, str]:
    """The sample's row; its paths relative to the dataset folder, or with `folder` (the dataset folder as
    seen from where the CSV is) before them."""
    rec = json.loads(sample.record_json)
    paths = {role: os.path.join(folder, path) for role, path in sample_paths(sample).items()}
    return {
        "sample_id": sample.id,
        "source_path": paths["source"],
        "edited_path": paths["edited"],
        "edited_keyframe_path": paths["edited_keyframe"],
        "depth_path": paths.get("depth", ""),
        "instruction": rec["instruction"],
        "category": rec["category"],
        "target_description": rec["target_description"],
        "source_clip": rec["source_clip"],
        "scores": json.dumps(rec["scores"], sort_keys=True),
    }


FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")  # OWASP CSV injection: what a spreadsheet evaluates


def spreadsheet_safe(cell: str) -> str:
    """A cell a spreadsheet shows as text: a leading formula character gets an apostrophe before it."""
    return f"'{cell}" if cell.startswith(FORMULA_PREFIXES) else cell


def csv_bytes(columns: list[str], rows: list[dict[str, str]], header: bool = True) -> bytes:
    """CSV with every cell made spreadsheet-safe."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns)
    if header:
        writer.writeheader()
    writer.writerows({k: spreadsheet_safe(str(v)) for k, v in row.items()} for row in rows)
    return buf.getvalue().encode()


def write_csv(path: Path, columns: list[str], rows: list[dict[str, str]]) -> int:
    atomic_write_bytes(path, csv_bytes(columns, rows))
    return len(rows)


def add_to_metadata_csv(engine: Engine, dataset_dir: Path, sample: Sample) -> None:
    """metadata.csv with `sample` appended (a commit reads only the file's first and last rows, so it costs the
    same at a million samples), or rebuilt from the store when the file is not the run's committed samples
    (missing, other columns, cut short by a kill, or another run's). Call it under index_lock."""
    path = dataset_dir / "metadata.csv"
    if not lists_the_runs_samples(engine, path, sample.run_id):
        rewrite_metadata_csv(engine, dataset_dir, sample.run_id, last=sample)
        return
    with path.open("ab") as fh:
        fh.write(csv_bytes(METADATA_COLUMNS, [metadata_row(sample)], header=False))
        fh.flush()
        os.fsync(fh.fileno())


def lists_the_runs_samples(engine: Engine, path: Path, run_id: str | None) -> bool:
    """Whether metadata.csv lists the run's committed samples and nothing else. Commits append one at a time,
    in the order of acceptance, and a file is rebuilt whole otherwise, so one that starts with the run's first
    sample and ends with its newest lists them all: only its start and end are read."""
    first, newest = accepted_in_order(engine, run_id, oldest_only=True), accepted_in_order(engine, run_id, True)
    start = csv_bytes(METADATA_COLUMNS, [metadata_row(r) for r in first])
    end = csv_bytes(METADATA_COLUMNS, [metadata_row(r) for r in newest], header=not newest)
    if not path.is_file() or (size := path.stat().st_size) < len(start):
        return False
    with path.open("rb") as fh:
        head = fh.read(len(start))
        fh.seek(max(0, size - len(end)))
        return head == start and fh.read() == end and (bool(newest) or size == len(end))


def dataset_run(engine: Engine) -> str | None:
    """The run whose samples are the dataset of an --out, in metadata.csv and every export unless --run
    names another: the latest one started."""
    latest = latest_run(engine)
    return latest.id if latest else None


def repair_metadata_csv(engine: Engine, dataset_dir: Path) -> bool:
    """metadata.csv made whole before a run goes on and when it ends: rebuilt from the store when it does not
    list the latest run's samples (missing, or a kill cut its last commit short: the row half written, or
    written with no Sample row behind it). Returns whether it was rebuilt."""
    with index_lock(dataset_dir):
        run_id = dataset_run(engine)
        if lists_the_runs_samples(engine, dataset_dir / "metadata.csv", run_id):
            return False
        rewrite_metadata_csv(engine, dataset_dir, run_id)
        return True


def rewrite_metadata_csv(engine: Engine, dataset_dir: Path, run_id: str | None, last: Sample | None = None) -> int:
    """The run's whole index from the store, in order of acceptance, with `last` (a sample whose row is not
    committed yet) at the end. The caller holds index_lock."""
    rows = [metadata_row(r) for r in accepted_in_order(engine, run_id) if last is None or r.id != last.id]
    return write_csv(dataset_dir / "metadata.csv", METADATA_COLUMNS, rows + ([metadata_row(last)] if last else []))


@contextmanager
def index_lock(dataset_dir: Path) -> Iterator[None]:
    dataset_dir.mkdir(parents=True, exist_ok=True)
    with open(dataset_dir / ".index.lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def write_metadata_csv(engine: Engine, dataset_dir: Path, run_id: str, to: Path | None = None) -> int:
    """The run's whole index, rebuilt from the store (in order of acceptance), as dataset_dir/metadata.csv or
    as to/metadata.csv with its paths relative to `to`. The rows are read inside the lock: the last writer
    always writes the newest state."""
    if to is not None and to.resolve() != dataset_dir.resolve():
        prefix = os.path.relpath(dataset_dir.resolve(), to.resolve())
        rows = [metadata_row(r, prefix) for r in accepted_in_order(engine, run_id)]
        return write_csv(to / "metadata.csv", METADATA_COLUMNS, rows)
    with index_lock(dataset_dir):
        return rewrite_metadata_csv(engine, dataset_dir, run_id)
