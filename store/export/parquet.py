"""Parquet for Hugging Face datasets: one row per sample (file paths or, embedded, the files' bytes;
instruction, category, target description, judge scores, lineage, split), one file per split under data/,
and a dataset card (README.md with YAML front matter) so the folder can be pushed to a hub as it is.
Read it with datasets.load_dataset("parquet", data_files=...) or load_dataset(DIR)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from store.export import SPLITS, ExportResult, ExportSample, place_once, replace_if_changed, write_if_changed

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


def dataset_card(table_schema: Any, counts: dict[str, int], sizes: dict[str, int]) -> str:
    """README.md: the features and splits as datasets reads them from YAML; the license is the user's call."""
    dtypes = {"string": "string", "binary": "binary", "double": "float64"}
    front = {
        "license": None,
        "task_categories": ["video-to-video"],
        "tags": ["video-editing", "synthetic", "ditto"],
        "configs": [
            {"config_name": "default", "data_files": [{"split": s, "path": f"data/{s}-*.parquet"} for s in counts]}
        ],
        "dataset_info": {
            "features": [{"name": f.name, "dtype": dtypes[str(f.type)]} for f in table_schema],
            # datasets reads a split as malformed (and warns) without its size in bytes
            "splits": [{"name": s, "num_bytes": sizes[s], "num_examples": n} for s, n in counts.items()],
        },
    }
    return (
        "---\n" + yaml.safe_dump(front, sort_keys=False) + "---\n\n# Instruction-based video editing triplets\n\n"
        "Made by the Ditto agent: each row is a source clip, an edit instruction and the edited clip, with the "
        "edited key frame, the judges' scores and the lineage (backends, template hashes, seeds). `heldout` "
        "rows were never trained on. Fill in `license` above before publishing; it depends on your source clips.\n"
    )


def export_parquet(samples: list[ExportSample], to: Path, embed: bool, batch: int = 64) -> ExportResult:
    """Rows are written a batch at a time, so embedded videos never sit in memory all at once."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    result = ExportResult(path=to)
    scores = score_columns(samples)
    table_schema = schema(scores, embed)
    counts: dict[str, int] = {}
    sizes: dict[str, int] = {}
    for split in SPLITS:
        members = [s for s in samples if s.split == split]
        if not members:
            continue
        path = to / "data" / f"{split}-00000-of-00001.parquet"
        with replace_if_changed(path, result) as tmp:
            with pq.ParquetWriter(tmp, table_schema) as writer:
                for start in range(0, len(members), batch):
                    rows = [row(s, scores, files_of(s, to, embed, result)) for s in members[start : start + batch]]
                    writer.write_table(pa.Table.from_pylist(rows, schema=table_schema))
        counts[split], sizes[split] = len(members), path.stat().st_size
        result.samples += len(members)
    if counts:
        write_if_changed(to / "README.md", dataset_card(table_schema, counts, sizes).encode(), result)
    return result


def files_of(sample: ExportSample, to: Path, embed: bool, result: ExportResult) -> dict[str, Any]:
    """The row's file columns: the bytes, or paths relative to `to` with the files placed there."""
    if embed:
        return {role: sample.files[role].read_bytes() for role in FILE_COLUMNS}
    for role in FILE_COLUMNS:
        place_once(sample.files[role], to / sample.relpaths[role], result)
    return {role: sample.relpaths[role] for role in FILE_COLUMNS}
