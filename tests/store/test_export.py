"""Each export is read back by the library that consumes it, and a second export copies nothing again."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import stat
import sys
import time
from pathlib import Path

import av
import pytest
from sqlmodel import Session, select
from typer.testing import CliRunner

from main import app
from store.artifacts import sha256_file
from store.dataset import (
    add_to_metadata_csv,
    atomic_write_bytes,
    place_file,
    repair_metadata_csv,
    spreadsheet_safe,
    write_csv,
)
from store.engine import open_engine
from store.tables import Sample
from store.video_io import encode_video, read_video

pytestmark = pytest.mark.slow


def export(out: Path, *args: str) -> str:
    result = CliRunner().invoke(app, ["export", "--out", str(out), *args])
    assert result.exit_code == 0, result.output
    return " ".join(result.output.split())


def accepted(out: Path) -> list[Sample]:
    with Session(open_engine(f"sqlite:///{out / 'ditto.db'}")) as s:
        return list(s.exec(select(Sample).order_by(Sample.created_at)).all())


def held_out(out: Path) -> list[str]:
    """The samples of the run's first source clip: held out (with 5 or fewer clips, the only held-out clip)."""
    samples = accepted(out)
    first = json.loads(samples[0].record_json)["source_clip"]
    return [x.id for x in samples if json.loads(x.record_json)["source_clip"] == first]


def change_instruction(out: Path, sample_id: str, text: str) -> None:
    """As a re-judged or re-planned sample would: its record changes, its id stays."""
    with Session(open_engine(f"sqlite:///{out / 'ditto.db'}")) as s:
        sample = s.get(Sample, sample_id)
        assert sample is not None
        sample.record_json = json.dumps(json.loads(sample.record_json) | {"instruction": text})
        s.add(sample)
        s.commit()


def frames_of(path: Path) -> int:
    with av.open(str(path)) as video:
        return sum(1 for _ in video.decode(video=0))


def test_csv_cells_never_start_with_a_spreadsheet_formula(tmp_path: Path) -> None:
    hostile = ['=HYPERLINK("http://x")', "+1+1", "-2", "@SUM(A1)", "\tcmd", "\rcmd"]
    assert [spreadsheet_safe(c) for c in hostile] == ["'" + c for c in hostile]
    assert spreadsheet_safe("Make it a pencil sketch.") == "Make it a pencil sketch."
    write_csv(tmp_path / "x.csv", ["a", "b"], [{"a": c, "b": "plain"} for c in hostile])
    rows = list(csv.DictReader(open(tmp_path / "x.csv", newline="")))
    assert [r["a"] for r in rows] == ["'" + c for c in hostile] and {r["b"] for r in rows} == {"plain"}


def test_metadata_csv_neutralises_a_formula_instruction(run_copy: Path) -> None:
    first = accepted(run_copy)[0].id
    change_instruction(run_copy, first, "=cmd|' /C calc'!A0")
    export(run_copy, "--format", "metadata")
    export(run_copy, "--format", "diffsynth")
    for name, column in (("metadata.csv", "instruction"), ("metadata_vace_heldout.csv", "prompt")):
        rows = list(csv.DictReader(open(run_copy / "dataset" / name, newline="")))
        assert "'=cmd|' /C calc'!A0" in [r[column] for r in rows]
        assert not any(cell.startswith(("=", "+", "-", "@")) for r in rows for cell in r.values())


def diffsynth_dataset(base: Path, metadata: Path):  # type: ignore[no-untyped-def]
    """DiffSynth-Studio's UnifiedDataset, built as examples/wanvideo/model_training/train.py builds it with
    --data_file_keys video,vace_video,vace_reference_image (its audio operators, which need librosa, left out)."""
    core = pytest.importorskip("diffsynth.core", reason="diffsynth (DiffSynth-Studio 2.1.12) is not installed")
    return core.UnifiedDataset(
        base_path=str(base),
        metadata_path=str(metadata),
        data_file_keys=["video", "vace_video", "vace_reference_image"],
        main_data_operator=core.UnifiedDataset.default_video_operator(
            base_path=str(base), max_pixels=1024 * 1024, height_division_factor=16, width_division_factor=16,
            num_frames=81, time_division_factor=4, time_division_remainder=1,
        ),
    )  # fmt: skip


def test_diffsynth_export_loads_in_diffsynths_own_dataset(finished_run: Path) -> None:
    assert "written" in export(finished_run, "--format", "diffsynth")
    dataset_dir = finished_run / "dataset"
    train = diffsynth_dataset(dataset_dir, dataset_dir / "metadata_vace.csv")
    heldout = diffsynth_dataset(dataset_dir, dataset_dir / "metadata_vace_heldout.csv")
    assert len(train) + len(heldout) == len(accepted(finished_run)) and len(heldout) == len(held_out(finished_run))
    for data in [train[i] for i in range(len(train))] + [heldout[i] for i in range(len(heldout))]:
        assert isinstance(data["prompt"], str) and data["prompt"].strip()
        assert len(data["video"]) == len(data["vace_video"]) == 17  # 4k+1 frames, as Wan needs
        assert data["video"][0].size == data["vace_video"][0].size
        assert data["vace_reference_image"][0].size == data["video"][0].size


def test_diffsynth_export_cuts_a_pair_to_the_shorter_clip(run_copy: Path, tmp_path: Path) -> None:
    sample = accepted(run_copy)[1]
    edited = run_copy / "dataset" / sample.dataset_dir / "edited.mp4"
    frames, fps = read_video(edited)
    encode_video(frames[:13], fps, tmp_path / "short.mp4")
    os.replace(tmp_path / "short.mp4", edited)  # as a propagation retried at a lower memory level makes
    with Session(open_engine(f"sqlite:///{run_copy / 'ditto.db'}")) as s:  # and its record names
        row = s.get(Sample, sample.id)
        assert row is not None
        record = json.loads(row.record_json)
        row.record_json = json.dumps(record | {"artifacts": record["artifacts"] | {"edited": sha256_file(edited)}})
        s.add(row)
        s.commit()
    to = tmp_path / "vace"
    export(run_copy, "--format", "diffsynth", "--to", str(to))
    rows = {r["video"]: r for r in csv.DictReader(open(to / "metadata_vace.csv", newline=""))}
    row = rows[f"{sample.dataset_dir}/edited.mp4"]
    assert frames_of(to / row["video"]) == frames_of(to / row["vace_video"]) == 13
    assert all(frames_of(to / r["vace_video"]) == 17 for k, r in rows.items() if r is not row)


def test_parquet_export_loads_with_datasets_and_is_idempotent(run_copy: Path, tmp_path: Path, caplog) -> None:  # type: ignore[no-untyped-def]
    datasets = pytest.importorskip("datasets", reason="the export extra (datasets) is not installed")
    to = tmp_path / "hf"
    n, h = len(accepted(run_copy)), len(held_out(run_copy))
    said = " ".join(export(run_copy, "--format", "parquet", "--to", str(to)).split())
    assert f"{n} samples ({h} held out) in {to}:" in said
    assert "0 files written" in export(run_copy, "--format", "parquet", "--to", str(to))
    files = {s: str(to / "data" / f"{s}-00000-of-00001.parquet") for s in ("train", "heldout")}
    loaded = datasets.load_dataset("parquet", data_files=files, cache_dir=str(tmp_path / "cache"))
    assert (loaded["train"].num_rows, loaded["heldout"].num_rows) == (n - h, h)
    row = loaded["train"][0]
    assert row["split"] == "train" and row["instruction"] and row["category"] and row["target_description"]
    assert 0 <= row["score_video_temporal_consistency"] <= 10 and "judge_video" in json.loads(row["models"])
    assert frames_of(to / row["edited_video"]) == frames_of(to / row["source_video"]) == 17
    datasets.logging.enable_propagation()
    with caplog.at_level("WARNING"):
        card = datasets.load_dataset(str(to), cache_dir=str(tmp_path / "cache2"))  # README.md's YAML: features, splits
    assert card["heldout"][0]["split"] == "heldout"
    assert "malformed" not in caplog.text, caplog.text  # the card's splits are complete

    sample = loaded["train"][1]["sample_id"]
    change_instruction(run_copy, sample, "Make it look like a watercolour.")
    assert f"{n} samples" in export(run_copy, "--format", "parquet", "--to", str(to))
    again = datasets.load_dataset("parquet", data_files=files, cache_dir=str(tmp_path / "cache3"))["train"]
    assert again.num_rows == n - h and again.to_pandas().set_index("sample_id").loc[sample, "instruction"] == (
        "Make it look like a watercolour."
    )


def test_parquet_embed_carries_the_files_bytes(finished_run: Path, tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets", reason="the export extra (datasets) is not installed")
    to = tmp_path / "embedded"
    export(finished_run, "--format", "parquet", "--embed", "--to", str(to))
    assert sorted(p.name for p in to.iterdir()) == ["README.md", "data"]
    train = datasets.load_dataset(str(to), cache_dir=str(tmp_path / "cache"))["train"]
    with av.open(io.BytesIO(train[0]["edited_video"])) as video:
        assert sum(1 for _ in video.decode(video=0)) == 17


def test_webdataset_export_reads_back_with_webdataset(run_copy: Path, tmp_path: Path) -> None:
    wds = pytest.importorskip("webdataset", reason="the export extra (webdataset) is not installed")
    to = tmp_path / "wds"
    samples, h = accepted(run_copy), len(held_out(run_copy))
    export(run_copy, "--format", "webdataset", "--to", str(to), "--shard-size", "2")
    shards = sorted(to.glob("*.tar"))
    assert [p.name for p in shards] == [f"heldout-{k:06d}.tar" for k in range((h + 1) // 2)] + [
        f"train-{k:06d}.tar" for k in range((len(samples) - h + 1) // 2)
    ]
    read = {s["__key__"]: s for s in wds.WebDataset([str(p) for p in shards], shardshuffle=False)}
    assert sorted(read) == sorted(s.id for s in samples)
    for key, item in read.items():
        record = json.loads(item["json"])
        assert record["sample_id"] == key and item["txt"].decode() == record["instruction"]
        assert {"source.mp4", "edited.mp4", "edited_keyframe.png"} <= set(item)
        frames = av.open(io.BytesIO(item["edited.mp4"]))
        assert sum(1 for _ in frames.decode(video=0)) == 17
    assert read[samples[0].id]["json"] and json.loads(read[samples[0].id]["json"])["split"] == "heldout"

    stamps = {p.name: p.stat().st_mtime_ns for p in shards}
    assert "0 files written" in export(run_copy, "--format", "webdataset", "--to", str(to), "--shard-size", "2")
    change_instruction(run_copy, samples[-1].id, "Give it a cool blue grade.")
    assert "1 files written" in export(run_copy, "--format", "webdataset", "--to", str(to), "--shard-size", "2")
    changed = [p.name for p in sorted(to.glob("*.tar")) if p.stat().st_mtime_ns != stamps[p.name]]
    assert len(changed) == 1
    shutil.rmtree(to)


def test_webdataset_export_works_on_the_base_install(finished_run: Path, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """README said it needs the export extra: it writes tar files with the standard library."""
    for module in ("webdataset", "datasets"):  # as without the extra: the import fails
        monkeypatch.setitem(sys.modules, module, None)
    said = export(finished_run, "--format", "webdataset", "--to", str(tmp_path / "wds"))
    assert "samples" in said and sorted(p.name for p in (tmp_path / "wds").glob("*.tar"))


def test_metadata_csv_lists_every_accepted_sample_after_a_kill(tmp_path: Path) -> None:
    """kill -9 once samples are accepted: metadata.csv already lists each of them (it is written at commit)."""
    from bench.faults import start, write_config

    out = tmp_path / "out"
    proc = start(out, write_config(tmp_path))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None and len(list(out.glob("dataset/*/record.json"))) < 2:
        time.sleep(0.05)
    proc.kill()
    proc.wait(timeout=30)
    committed = {s.id for s in accepted(out)}
    assert committed, "no sample was accepted before the kill"
    listed = {r["sample_id"] for r in csv.DictReader(open(out / "dataset" / "metadata.csv", newline=""))}
    assert committed <= listed
    assert all((out / "dataset" / sample_id / "edited.mp4").is_file() for sample_id in listed)


def test_a_commit_cut_short_by_a_kill_is_listed_once_and_a_missing_index_rebuilt(run_copy: Path) -> None:
    engine = open_engine(f"sqlite:///{run_copy / 'ditto.db'}")
    dataset_dir, samples = run_copy / "dataset", accepted(run_copy)
    index = dataset_dir / "metadata.csv"

    def listed() -> list[str]:
        return [r["sample_id"] for r in csv.DictReader(open(index, newline=""))]

    assert listed() == [s.id for s in samples]
    assert not repair_metadata_csv(engine, dataset_dir)  # a sound file is left as it is
    index.write_bytes(index.read_bytes()[:-7])  # killed halfway through appending the last row
    assert repair_metadata_csv(engine, dataset_dir)
    assert listed() == [s.id for s in samples]
    with Session(engine) as s:  # killed after the row's append, before its Sample row committed
        s.delete(s.get(Sample, samples[-1].id))
        s.commit()
    assert repair_metadata_csv(engine, dataset_dir)
    assert listed() == [s.id for s in samples[:-1]]
    add_to_metadata_csv(engine, dataset_dir, samples[-1])  # the rerun of that commit
    assert listed() == [s.id for s in samples]
    index.unlink()
    add_to_metadata_csv(engine, dataset_dir, samples[0])
    assert sorted(listed()) == sorted(s.id for s in samples[:-1])


def test_placing_a_file_over_the_leftovers_of_a_killed_commit(tmp_path: Path) -> None:
    """A kill between copying a sample's file under its temporary name and renaming it leaves that name
    behind: the rerun of the commit places the file all the same, and leaves no temporary file."""
    src = tmp_path / "artifact.mp4"
    src.write_bytes(b"new bytes")
    folder = tmp_path / "dataset" / "sample"
    folder.mkdir(parents=True)
    (folder / ".tmp-edited.mp4").write_bytes(b"a half-placed file")
    place_file(src, folder / "edited.mp4")
    atomic_write_bytes(folder / "record.json", b"{}")
    assert (folder / "edited.mp4").read_bytes() == b"new bytes"
    assert sorted(p.name for p in folder.iterdir()) == ["edited.mp4", "record.json"]
    place_file(src, tmp_path / "new" / "folder" / "edited.mp4")  # a folder that does not exist yet
    assert (tmp_path / "new" / "folder" / "edited.mp4").read_bytes() == b"new bytes"


def test_dataset_files_are_readable_as_the_umask_says(finished_run: Path) -> None:
    """On a shared cluster filesystem the dataset is for others too: mkstemp's 0600 made it its writer's alone.
    Artifacts are the same, less the write bits."""
    from store.file_modes import FILE_MODE, READ_ONLY_MODE

    files = [p for p in (finished_run / "dataset").rglob("*") if p.is_file()]
    artifacts = [p for p in (finished_run / "artifacts").rglob("*") if p.is_file()]
    assert files and {stat.S_IMODE(p.stat().st_mode) for p in files} == {FILE_MODE}
    assert artifacts and {stat.S_IMODE(p.stat().st_mode) for p in artifacts} == {READ_ONLY_MODE}


def test_metadata_csv_and_every_export_list_the_same_samples_after_a_new_run(
    finished_run: Path, run_copy: Path, tmp_path: Path
) -> None:
    """A second run on the same --out: metadata.csv and every export list the latest run's samples, the same ones
    with the same held-out count; --run picks the earlier run, whose index the dataset folder no longer is."""
    earlier = accepted(run_copy)
    made_with = ["--config", str(finished_run.parent / "small.yaml")]
    made_with += ["--source-dir", str(finished_run.parent / "sources")]
    result = CliRunner().invoke(app, ["--out", str(run_copy), "--new-run", *made_with])
    assert result.exit_code == 0, result.output
    latest = [s for s in accepted(run_copy) if s.run_id != earlier[0].run_id]
    ids = [s.id for s in latest]
    assert len(ids) == len(earlier)  # every call reused: the same samples again, under the new run's ids

    def rows(path: Path) -> list[dict[str, str]]:
        return list(csv.DictReader(open(path, newline="")))

    assert [r["sample_id"] for r in rows(run_copy / "dataset" / "metadata.csv")] == ids  # as the run left it
    clips = {r["source_clip"] for r in rows(run_copy / "dataset" / "metadata.csv")}
    assert clips <= {"bigbuckbunny.mp4", "carphone_pristine.mp4"}  # relative to --source-dir: it may move
    assert f"{len(ids)} samples listed" in export(run_copy)
    assert [r["sample_id"] for r in rows(run_copy / "dataset" / "metadata.csv")] == ids
    export(run_copy, "--format", "diffsynth")
    vace = {
        split: [r["video"].split("/")[0] for r in rows(run_copy / "dataset" / name)]
        for split, name in (("train", "metadata_vace.csv"), ("heldout", "metadata_vace_heldout.csv"))
    }
    assert sorted(vace["train"] + vace["heldout"]) == sorted(ids)
    export(run_copy, "--format", "parquet", "--to", str(tmp_path / "hf"))
    import pyarrow.parquet as pq

    table = pq.read_table(tmp_path / "hf" / "data").to_pydict()
    assert sorted(table["sample_id"]) == sorted(ids) and table["split"].count("heldout") == len(vace["heldout"])
    export(run_copy, "--format", "webdataset", "--to", str(tmp_path / "wds"))
    manifest = json.loads((tmp_path / "wds" / "manifest.json").read_text())
    assert sorted(i for shard in manifest.values() for i in shard["samples"]) == sorted(ids)

    said = export(run_copy, "--format", "parquet", "--run", earlier[0].run_id, "--to", str(tmp_path / "earlier"))
    assert f"{len(earlier)} samples" in said and f"the samples of run {earlier[0].run_id}" in said
    exported = pq.read_table(tmp_path / "earlier" / "data").to_pydict()["sample_id"]
    assert sorted(exported) == sorted(s.id for s in earlier)
    refused = CliRunner().invoke(app, ["export", "--out", str(run_copy), "--run", earlier[0].run_id])
    assert refused.exit_code == 1 and "--to DIR" in refused.output and len(refused.output.strip().splitlines()) <= 2
