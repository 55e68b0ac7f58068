"""Where weights come from: a local folder, a tiny test model ('tiny:NAME'), or, only when the user
allowed downloads, a hub id. Anything else fails before work starts, naming the step and the path."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


class CheckpointMissingError(FileNotFoundError):
    """A configured checkpoint is not on disk and downloads are not allowed."""


def resolve_checkpoint(step: str, path: str, allow_download: bool) -> str:
    if path.startswith("tiny:"):
        from models.tiny import materialize

        return str(materialize(path.removeprefix("tiny:")))
    local = Path(path).expanduser()
    if local.exists():
        return str(local)
    looks_like_hub_id = path.count("/") == 1 and not path.startswith((".", "/", "~"))
    if allow_download and looks_like_hub_id:
        return path
    hint = " (it looks like a hub id: pass --allow-download to fetch it)" if looks_like_hub_id else ""
    raise CheckpointMissingError(f"backends.{step}.path: no checkpoint at {path}{hint}")


def weights_identity(path: str) -> str:
    """What a checkpoint path holds, cheaply: the path with a digest of every file's name, size and mtime
    under it (a changed, added or removed file changes it), or the path alone where nothing local is
    there (a tiny test model's name, which its config fixes, or a hub id)."""
    local = Path(path).expanduser()
    if path.startswith("tiny:") or not local.exists():
        return path
    if local.is_file():
        files = {local.name: local}
    else:  # hidden folders hold a hub client's bookkeeping (locks, metadata), not weights
        found = ((p.relative_to(local), p) for p in local.rglob("*") if p.is_file())
        files = {str(rel): p for rel, p in found if not any(part.startswith(".") for part in rel.parts)}
    digest = hashlib.sha256()
    for name in sorted(files):
        st = os.stat(files[name])
        digest.update(f"{name}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return f"{path}@{digest.hexdigest()[:16]}"
