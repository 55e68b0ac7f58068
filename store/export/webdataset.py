"""WebDataset tar shards: `<split>-000000.tar`, each sample's files under one key (its sample id):
`<id>.source.mp4`, `<id>.edited.mp4`, `<id>.edited_keyframe.png`, `<id>.json` (the record and split),
`<id>.txt` (the instruction). Samples keep their order of acceptance, so new samples only touch the last
shard of a split; a shard is rewritten only when what it holds changed (manifest.json says what it held)."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

from store.dataset import SAMPLE_FILES, atomic_write_bytes
from store.export import SPLITS, ExportResult, ExportSample, replace_if_changed

MANIFEST = "manifest.json"


def write_shard(samples: list[ExportSample], path: Path) -> None:
    """A tar with fixed owners and times, so the same samples make the same bytes; files are streamed in."""
    with tarfile.open(path, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for sample in samples:
            for role, file in sample.files.items():
                info = tarfile.TarInfo(f"{sample.id}.{SAMPLE_FILES[role]}")
                info.size, info.mode = file.stat().st_size, 0o644
                with open(file, "rb") as fh:
                    tar.addfile(info, fh)
            record = json.dumps(sample.record | {"split": sample.split}, sort_keys=True).encode()
            for suffix, data in (("json", record), ("txt", sample.record["instruction"].encode())):
                info = tarfile.TarInfo(f"{sample.id}.{suffix}")
                info.size, info.mode = len(data), 0o644
                tar.addfile(info, io.BytesIO(data))


def export_webdataset(samples: list[ExportSample], to: Path, shard_size: int) -> ExportResult:
    if shard_size < 1:
        raise ValueError(f"--shard-size must be at least 1 sample, got {shard_size}")
    if any("." in s.id for s in samples):  # webdataset splits a member's key from its suffix at the first dot
        raise ValueError("sample ids with a dot cannot be WebDataset keys")
    result = ExportResult(path=to)
    manifest_path = to / MANIFEST
    old = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    manifest: dict[str, dict[str, object]] = {}
    for split in SPLITS:
        members = [s for s in samples if s.split == split]
        for start in range(0, len(members), shard_size):
            shard = members[start : start + shard_size]
            name = f"{split}-{start // shard_size:06d}.tar"
            entry = {"samples": [s.id for s in shard], "digests": [s.digest for s in shard], "shard_size": shard_size}
            manifest[name] = entry
            if old.get(name) == entry and (to / name).is_file():
                result.files_unchanged += 1
                continue
            with replace_if_changed(to / name, result) as tmp:
                write_shard(shard, tmp)
        result.samples += len(members)
    for name in set(old) - set(manifest):  # shards of an earlier, different --shard-size
        (to / name).unlink(missing_ok=True)
    atomic_write_bytes(manifest_path, json.dumps(manifest, indent=1, sort_keys=True).encode())
    return result
