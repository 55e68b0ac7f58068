"""Files a user can trust: the dataset holds copies, never hard links into the artifact store; artifacts are
read-only and checked against their names when read; `verify` finds a truncated dataset file or artifact and
says what to do, `--repair` does it; an export never writes a file that changed, and a run that needs a
changed artifact makes it again."""

from __future__ import annotations

import errno
import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest
from sqlmodel import Session, select
from typer.testing import CliRunner

from main import app
from store.artifacts import ArtifactChanged, ArtifactStore, sha256_file
from store.dataset import SAMPLE_FILES
from store.engine import open_engine
from store.tables import Sample

pytestmark = pytest.mark.slow


def cli(*args: str) -> tuple[int, str]:
    """Exit code, and the output with rich's line wrapping undone (the lines name long paths)."""
    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})
    return result.exit_code, " ".join(result.output.split())


def samples(out: Path) -> list[Sample]:
    with Session(open_engine(f"sqlite:///{out / 'ditto.db'}")) as s:
        return list(s.exec(select(Sample).order_by(Sample.created_at)).all())


def files_of(out: Path, sample: Sample) -> dict[Path, Path]:
    """Each dataset file of the sample -> the artifact it was copied from."""
    refs = json.loads(sample.record_json)["artifacts"]
    store = out / "artifacts"
    return {out / "dataset" / sample.dataset_dir / SAMPLE_FILES[r]: store / ref[:2] / ref for r, ref in refs.items()}


def test_dataset_files_are_copies_and_artifacts_are_read_only(finished_run: Path) -> None:
    for sample in samples(finished_run):
        for copy, artifact in files_of(finished_run, sample).items():
            assert not copy.samefile(artifact), f"{copy} is a hard link to {artifact}"
            assert sha256_file(copy) == artifact.name.split(".")[0]
            assert stat.S_IMODE(artifact.stat().st_mode) & 0o222 == 0, f"{artifact} is writable"


def test_reading_a_changed_artifact_names_it_as_an_io_error(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path, open_engine(f"sqlite:///{tmp_path / 'ditto.db'}"))
    ref = store.write_array(np.arange(10.0))
    os.truncate(store.path(ref), 50)
    with pytest.raises(ArtifactChanged) as caught:
        store.read_array(ref)
    assert caught.value.errno == errno.EIO  # the store's fault: a run stops resumably, no episode is blamed
    assert str(store.path(ref)) in str(caught.value) and f"verify --out {tmp_path}" in str(caught.value)


def test_verify_finds_a_truncated_dataset_file_and_artifact_and_repair_restores_both(run_copy: Path) -> None:
    first, second = samples(run_copy)[:2]
    ((copy, _),) = [(c, a) for c, a in files_of(run_copy, first).items() if c.name == "edited.mp4"]
    ((_, artifact),) = [(c, a) for c, a in files_of(run_copy, second).items() if c.name == "edited.mp4"]
    expected = {copy: copy.read_bytes(), artifact: artifact.read_bytes()}
    os.truncate(copy, 100)  # the user's dataset copy: its artifact stays whole
    os.chmod(artifact, 0o644)
    os.truncate(artifact, 100)  # the store's own file: the dataset holds an intact copy of it
    assert sha256_file(files_of(run_copy, first)[copy]) == files_of(run_copy, first)[copy].name.split(".")[0]

    code, output = cli("verify", "--out", str(run_copy))
    assert code == 1
    assert f"{copy} changed since it was written: restore it as a copy of {run_copy / 'artifacts'}" in output
    assert f"{artifact} changed since it was written: restore it as a copy of {run_copy / 'dataset'}" in output
    assert "2 to fix" in output and "--repair" in output

    code, output = cli("verify", "--out", str(run_copy), "--repair")
    assert code == 0, output
    assert "2 files restored; 0 still differ" in output
    assert {path: path.read_bytes() for path in expected} == expected
    assert stat.S_IMODE(artifact.stat().st_mode) & 0o222 == 0


def test_a_changed_artifact_without_a_copy_is_set_aside_and_made_again_by_the_next_run(run_copy: Path) -> None:
    """An image only the store holds (a key frame of an attempt that was not kept): set aside, its row
    dropped, so that the calls that made it run again when a run needs it."""
    in_dataset = {a.name for s in samples(run_copy) for a in files_of(run_copy, s).values()}
    lonely = next(p for p in sorted((run_copy / "artifacts").rglob("*.png")) if p.name not in in_dataset)
    os.chmod(lonely, 0o644)
    lonely.write_bytes(b"not a png")
    code, output = cli("verify", "--out", str(run_copy))
    assert code == 1 and f"move it to {run_copy / 'artifacts-changed'}" in output
    code, output = cli("verify", "--out", str(run_copy), "--repair")
    assert code == 0, output
    assert (run_copy / "artifacts-changed" / lonely.name).read_bytes() == b"not a png" and not lonely.exists()


def test_an_export_leaves_out_a_sample_whose_file_changed_and_says_how_to_restore_it(run_copy: Path) -> None:
    first = samples(run_copy)[0]
    copy = next(c for c in files_of(run_copy, first) if c.name == "source.mp4")
    os.truncate(copy, 100)
    code, output = cli("export", "--out", str(run_copy), "--format", "parquet")
    assert code == 1
    assert f"skipped {first.id}: {copy} changed since it was written: python main.py verify --out" in output
    import pyarrow.parquet as pq

    exported = set(pq.read_table(run_copy / "parquet" / "data").to_pydict()["sample_id"])
    assert first.id not in exported and len(exported) == len(samples(run_copy)) - 1


def test_a_run_that_reuses_a_changed_artifact_makes_it_again(run_copy: Path, tmp_path: Path) -> None:
    """A resumed run reads what cached calls made: a call whose file changed since runs again and writes the
    bytes back, so the new episodes never see the broken file."""
    source = files_of(run_copy, samples(run_copy)[0])
    artifact = next(a for c, a in source.items() if c.name == "source.mp4")  # the ingested clip, reused by ingest
    os.chmod(artifact, 0o644)
    os.truncate(artifact, 100)
    code, output = cli("--out", str(run_copy), "--episodes-per-clip", "3")
    assert code == 0, output
    assert sha256_file(artifact) == artifact.name.split(".")[0]
    code, output = cli("verify", "--out", str(run_copy))
    assert code == 0, output
