"""Parquet for Hugging Face datasets: one row per sample (file paths or, embedded, the files' bytes;
instruction, category, target description, judge scores, lineage, split), one file per split under data/,
and a dataset card (README.md with YAML front matter) so the folder can be pushed to a hub as it is.
Read it with datasets.load_dataset("parquet", data_files=...) or load_dataset(DIR)."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import yaml

from store.export import SPLITS, ExportResult, ExportSample, place_once, write_if_changed

FILE_COLUMNS = {"source": "source_video", "edited": "edited_video", "edited_keyframe": "edited_keyframe"}
TEXT_COLUMNS = ["sample_id", "split", "instruction", "category", "target_description", "caption", "source_clip"]
LINEAGE_COLUMNS = ["models", "templates", "seeds", "artifacts"]  # JSON text: their keys vary by profile


def score_columns(samples: list[ExportSample]) -> list[str]:
    """One float column per judge stage and criterion, e.g. score_video_temporal_consistency."""
    names = {f"score_{stage}_{k}" for s in samples for stage, scores in s.record["scores"].items() for k in scores}
    return sorted(names)


def schema(scores: list[str], embed: bool):  # type: ignore[no-untyped-def]
    import pyarrow as pa

    file_type = pa.binary() if embed else pa.string()
    return pa.schema(
        [(c, pa.string()) for c in TEXT_COLUMNS]
        + [(c, file_type) for c in FILE_COLUMNS.values()]
        + [(c, pa.float64()) for c in scores]
        + [(c, pa.string()) for c in LINEAGE_COLUMNS]
    )


def row(sample: ExportSample, scores: list[str], files: dict[str, Any]) -> dict[str, Any]:
    rec = sample.record
    flat = {f"score_{stage}_{k}": v for stage, by in rec["scores"].items() for k, v in by.items()}
    return (
        {"sample_id": sample.id, "split": sample.split}
        | {c: rec.get(c) for c in TEXT_COLUMNS[2:]}
        | {FILE_COLUMNS[role]: files[role] for role in FILE_COLUMNS}
        | {c: flat.get(c) for c in scores}
        | {c: json.dumps(rec.get(c, {}), sort_keys=True) for c in LINEAGE_COLUMNS}
    )


def dataset_card(tables: dict[str, Any]) -> str:
    """README.md: the features and splits as datasets reads them from YAML; the license is the user's call."""
    first = next(iter(tables.values()))
    dtypes = {"string": "string", "binary": "binary", "double": "float64"}
    front = {
        "license": None,
        "task_categories": ["video-to-video"],
        "tags": ["video-editing", "synthetic", "ditto"],
        "configs": [
            {"config_name": "default", "data_files": [{"split": s, "path": f"data/{s}-*.parquet"} for s in tables]}
        ],
        "dataset_info": {
            "features": [{"name": f.name, "dtype": dtypes[str(f.type)]} for f in first.schema],
            "splits": [{"name": s, "num_examples": t.num_rows} for s, t in tables.items()],
        },
    }
    return (
        "---\n" + yaml.safe_dump(front, sort_keys=False) + "---\n\n# Instruction-based video editing triplets\n\n"
        "Made by the Ditto agent: each row is a source clip, an edit instruction and the edited clip, with the "
        "edited key frame, the judges' scores and the lineage (backends, template hashes, seeds). `heldout` "
        "rows were never trained on. Fill in `license` above before publishing; it depends on your source clips.\n"
    )


def export_parquet(samples: list[ExportSample], to: Path, embed: bool) -> ExportResult:
    import pyarrow as pa
    import pyarrow.parquet as pq

    result = ExportResult(path=to / "README.md")
    scores = score_columns(samples)
    rows: dict[str, list[dict[str, Any]]] = {s: [] for s in SPLITS}
    for sample in samples:
        if embed:
            files: dict[str, Any] = {role: sample.files[role].read_bytes() for role in FILE_COLUMNS}
        else:
            files = {role: sample.relpaths[role] for role in FILE_COLUMNS}
            for role, rel in files.items():
                place_once(sample.files[role], to / rel, result)
        rows[sample.split].append(row(sample, scores, files))
        result.samples += 1
    tables = {s: pa.Table.from_pylist(r, schema=schema(scores, embed)) for s, r in rows.items() if r}
    for split, table in tables.items():
        buf = io.BytesIO()
        pq.write_table(table, buf)
        write_if_changed(to / "data" / f"{split}-00000-of-00001.parquet", buf.getvalue(), result)
    if tables:
        write_if_changed(to / "README.md", dataset_card(tables).encode(), result)
    return result
