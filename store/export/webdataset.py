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
from store.export import SPLITS, ExportResult, ExportSample

MANIFEST = "manifest.json"


def shard_bytes(samples: list[ExportSample]) -> bytes:
    """A tar with fixed owners and times, so the same samples make the same bytes."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for sample in samples:
            members = {f"{sample.id}.{SAMPLE_FILES[role]}": path.read_bytes() for role, path in sample.files.items()}
            members[f"{sample.id}.json"] = json.dumps(sample.record | {"split": sample.split}, sort_keys=True).encode()
            members[f"{sample.id}.txt"] = sample.record["instruction"].encode()
            for name, data in members.items():
                info = tarfile.TarInfo(name)
                info.size, info.mode = len(data), 0o644
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


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
            atomic_write_bytes(to / name, shard_bytes(shard))
            result.files_written += 1
        result.samples += len(members)
    for name in set(old) - set(manifest):  # shards of an earlier, different --shard-size
        (to / name).unlink(missing_ok=True)
    atomic_write_bytes(manifest_path, json.dumps(manifest, indent=1, sort_keys=True).encode())
    return result
