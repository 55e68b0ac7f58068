"""Checks around a run that pydantic cannot make: its inputs on disk, before anything is created in --out
(so bad input leaves no run behind), and templates edited since a run's calls used them."""

from __future__ import annotations

import errno
import json
import os
import socket
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, func, select

from agent.config import ConfigError, RunConfig, endpoint_url_name, endpoints
from agent.faults import RunError
from agent.sources import iter_clips
from prompts.loader import PromptBook, PromptError
from store.tables import Episode, ToolCall


def check_run_inputs(cfg: RunConfig) -> None:
    """Raises ConfigError naming the flag and what is wrong."""
    check_out_folder(cfg.out)
    check_source_dir(cfg.source_dir)
    check_templates(cfg.prompts_dir)
    for step, url in endpoints(cfg.backends).items():
        check_endpoint(step, url)


def check_out_folder(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out}: is a file, not a folder")
    nearest = next(p for p in (out.absolute(), *out.absolute().parents) if p.exists())  # "/" always exists
    try:
        with tempfile.TemporaryFile(dir=nearest):
            pass
    except OSError as err:
        raise ConfigError(f"--out {out}: cannot write in {nearest} ({err.strerror})") from err


def check_source_dir(source_dir: Path | None) -> None:
    """The folder holds a clip: the walk stops at the first one, so a million clips are checked at once."""
    if source_dir is not None:
        try:
            os.stat(source_dir)
        except OSError as err:
            what = {errno.ELOOP: "is a symlink loop", errno.ENOENT: "does not exist"}.get(err.errno or 0)
            raise ConfigError(f"--source-dir {source_dir}: {what or f'cannot be read ({err.strerror})'}") from err
        if not source_dir.is_dir():
            raise ConfigError(f"--source-dir {source_dir}: is not a folder")
    try:
        first = next(iter_clips(source_dir), None)
    except (RunError, OSError) as err:
        raise ConfigError(f"--source-dir {source_dir}: {err}" if source_dir else str(err)) from err
    if first is None:
        raise ConfigError(f"--source-dir {source_dir}: holds no video files (.mp4 .mov .webm .mkv)")


ENDPOINT_CONNECT_S = 5.0  # a live endpoint accepts a connection at once, even when its model is busy


def check_endpoint(step: str, url: str) -> None:
    """Something listens at an OpenAI-compatible endpoint's URL (RunConfig checked its form): a server that is
    not up fails here, in one line, instead of in every episode."""
    name = endpoint_url_name(step)
    parts = urlsplit(url)
    host, port = parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)
    try:
        socket.create_connection((host, port), timeout=ENDPOINT_CONNECT_S).close()
    except socket.gaierror as err:
        raise ConfigError(f"{name} {url}: the host {host} is not known ({err.strerror})") from err
    except OSError as err:
        why = "does not answer" if isinstance(err, TimeoutError) else (err.strerror or str(err)).lower()
        fix = "leave the flag out" if step == "planner" else f"configure another backends.{step}"
        raise ConfigError(f"{name} {url}: {why}; start the endpoint first, or {fix}") from err


def check_templates(prompts_dir: Path | None) -> None:
    """Every template renders with the variables the code gives it, before the first episode."""
    try:
        PromptBook(prompts_dir).check_all()
    except PromptError as err:
        raise ConfigError(str(err)) from err
    except OSError as err:
        raise ConfigError(f"--prompts {prompts_dir}: cannot be read ({err.strerror})") from err


def changed_templates(engine: Engine, run_id: str, prompts: PromptBook) -> list[str]:
    """Templates whose text differs now from what the run's latest calls rendered: the run keeps its
    results, and only a new run (which reuses every call whose templates did not change) applies them."""
    with Session(engine) as s:
        latest = (
            select(func.max(ToolCall.id))
            .join(Episode, col(Episode.id) == ToolCall.episode_id)
            .where(Episode.run_id == run_id)
            .group_by(ToolCall.tool, ToolCall.node)
        )
        used = s.exec(select(ToolCall.prompts_json).where(col(ToolCall.id).in_(latest))).all()
    hashes = {p["name"]: p["sha256"] for prompts_json in used for p in json.loads(prompts_json)}
    changed = []
    for name, sha in sorted(hashes.items()):
        try:
            if prompts.source(name).sha256 != sha:
                changed.append(name)
        except PromptError:  # gone since: the run cannot use it again either
            changed.append(name)
    return changed
