"""The dataset folder: one sub-folder per accepted sample (files + record.json) and metadata.csv.
A sample's row and its files are committed together; a rerun of the same commit changes nothing."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from store.tables import Episode, Sample, utcnow

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
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def place_file(src: Path, dest: Path) -> None:
    """Hard-link when the dataset and artifacts share a disk (no copy), else copy; atomic either way."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".tmp-{dest.name}")
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)
    except OSError:
        shutil.copyfile(src, tmp)
    os.replace(tmp, dest)


def commit_sample(
    engine: Engine,
    dataset_dir: Path,
    sample_id: str,
    episode_id: str,
    run_id: str,
    files: dict[str, Path],
    record: dict[str, Any],
) -> None:
    """Write the sample's files, then its Sample row and the episode's status in one transaction."""
    folder = dataset_dir / sample_id
    for name, src in files.items():
        place_file(src, folder / name)
    record = {**record, "files": sorted(files)}
    atomic_write_bytes(folder / "record.json", json.dumps(record, indent=2, sort_keys=True).encode())
    with Session(engine) as s:
        if s.get(Sample, sample_id) is None:
            s.add(
                Sample(
                    id=sample_id,
                    episode_id=episode_id,
                    run_id=run_id,
                    dataset_dir=str(folder.relative_to(dataset_dir)),
                    record_json=json.dumps(record),
                )
            )
        finish_episode(s, episode_id, "accepted", None, None)
        s.commit()


def finish_episode(s: Session, episode_id: str, status: str, reason: str | None, detail: str | None) -> None:
    episode = s.get(Episode, episode_id)
    if episode is not None:
        episode.status, episode.reason, episode.detail = status, reason, detail
        episode.finished_at = episode.finished_at or utcnow()
        s.add(episode)


def discard_episode(engine: Engine, episode_id: str, reason: str, detail: str) -> None:
    with Session(engine) as s:
        finish_episode(s, episode_id, "discarded", reason, detail)
        s.commit()


def metadata_rows(engine: Engine, run_id: str | None = None) -> list[dict[str, str]]:
    with Session(engine) as s:
        query = select(Sample).order_by(Sample.id)
        if run_id:
            query = query.where(Sample.run_id == run_id)
        samples = s.exec(query).all()
    rows = []
    for sample in samples:
        rec = json.loads(sample.record_json)
        files = set(rec["files"])
        rows.append(
            {
                "sample_id": sample.id,
                "source_path": f"{sample.dataset_dir}/source.mp4",
                "edited_path": f"{sample.dataset_dir}/edited.mp4",
                "edited_keyframe_path": f"{sample.dataset_dir}/edited_keyframe.png",
                "depth_path": f"{sample.dataset_dir}/depth.mp4" if "depth.mp4" in files else "",
                "instruction": rec["instruction"],
                "category": rec["category"],
                "target_description": rec["target_description"],
                "source_clip": rec["source_clip"],
                "scores": json.dumps(rec["scores"], sort_keys=True),
            }
        )
    return rows


def _write_csv(path: Path, columns: list[str], rows: list[dict[str, str]]) -> int:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_bytes(path, buf.getvalue().encode())
    return len(rows)


def write_metadata_csv(engine: Engine, dataset_dir: Path) -> int:
    return _write_csv(dataset_dir / "metadata.csv", METADATA_COLUMNS, metadata_rows(engine))


DIFFSYNTH_COLUMNS = ["video", "vace_video", "vace_reference_image", "prompt"]


def write_diffsynth_csv(engine: Engine, dataset_dir: Path) -> int:
    """metadata_vace.csv for DiffSynth-Studio's Wan VACE training (run it with --dataset_base_path at the
    dataset folder and --data_file_keys video,vace_video,vace_reference_image): the edited clip is the
    target, the source clip the VACE context video, the edited key frame the reference, the instruction
    the prompt."""
    rows = [
        {
            "video": r["edited_path"],
            "vace_video": r["source_path"],
            "vace_reference_image": r["edited_keyframe_path"],
            "prompt": r["instruction"],
        }
        for r in metadata_rows(engine)
    ]
    return _write_csv(dataset_dir / "metadata_vace.csv", DIFFSYNTH_COLUMNS, rows)
