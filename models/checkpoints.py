"""Where weights come from: a local folder, a tiny test model ('tiny:NAME'), or, only when the user
allowed downloads, a hub id. Anything else fails before work starts, naming the step and the path."""

from __future__ import annotations

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
