"""Whose fault a failure is, and what then happens, decided here and nowhere else.

- The tool's: a call failed, for a reason a retry may cure. The episode retries as policy.after_failure says
  for the kind (a lower memory level, a new seed, a rewritten instruction; PolicyConfig names which) and, once
  its attempts are spent, is discarded with the reason `<kind>@<node>`.
- The episode's: its input is unusable. It is discarded at once, and the call is reused from the cache by a
  rerun, which would fail the same way.
- The run's: the store cannot be written, a template broke, a backend stayed down, a Ray pool has no actor.
  The run stops, every episode keeps its checkpoint, and the same command resumes it once the cause is gone;
  the command line says so in one line with the resume command.

FAULTS lists every kind of failure with whose it is and what it means; a ToolError's kind is one of them
(tools.base.ErrorKind). run_stop sorts the exceptions that are the run's."""

from __future__ import annotations

import errno
import sqlite3
from pathlib import Path
from typing import Literal

from sqlalchemy.exc import OperationalError

from prompts.loader import PromptError

Whose = Literal["tool", "episode", "run"]

FAULTS: dict[str, tuple[Whose, str]] = {
    "bad_input": ("episode", "the input itself is unusable: a rerun fails the same way"),
    "category_unfit": ("tool", "no edit of the asked category fits the clip: the next category is planned"),
    "unsupported_edit": ("tool", "the backend cannot make the edit the instruction asks for"),
    "llm_schema": ("tool", "a model answered, re-asked, and still not in the answer's schema"),
    "oom": ("tool", "the device (or the host) ran out of memory"),
    "timeout": ("tool", "the call ran past its time limit and was abandoned"),
    "tool_failed": ("tool", "the tool raised an error"),
    "backend_unavailable": ("run", "a backend stayed unreachable for policy.outage_after calls in a row"),
    "storage": ("run", "the run's folder or its database cannot be written (disk full, read-only, locked)"),
    "template": ("run", "a prompt template broke while the run used it"),
}
REUSED_FAILURES = tuple(kind for kind, (whose, _) in FAULTS.items() if whose == "episode")
# The output disk full, over quota, read-only or failing: nothing an episode can retry its way out of.
STORAGE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO}


class RunError(Exception):
    """The run cannot start (no clips, an unknown run id, a config that does not match the store) or has to stop
    (the run's faults, below). No episode's fault: every episode keeps its checkpoint."""


class StorageError(RunError):
    """FAULTS['storage']."""


class OutageStop(RunError):
    """FAULTS['backend_unavailable']: the run stops as interrupted, with every episode waiting on the backend
    checkpointed."""


class PoolStop(RunError):
    """A Ray pool has no actor left: none could be placed (no node with room: lost, or never added) or load its
    tools within its deadline (ray_waits), or the driver's watcher of the pools died. The message names the
    pool and what it lacks; the same command resumes the run once the cluster has it."""


class TemplateStop(RunError):
    """FAULTS['template']: edited while the run used it, say. Once it is fixed the same command resumes."""


def storage_fault(err: BaseException) -> bool:
    if isinstance(err, OSError) and err.errno in STORAGE_ERRNOS:
        return True
    if isinstance(err, OperationalError | sqlite3.OperationalError):
        return True
    try:  # the PostgreSQL checkpointer raises psycopg's own errors (server gone, disk full, ...)
        import psycopg
    except ImportError:
        return False
    return isinstance(err, psycopg.OperationalError)


def is_run_fault(err: BaseException) -> bool:
    return isinstance(err, RunError | PromptError) or storage_fault(err)


def run_stop(err: BaseException, out: Path) -> RunError | None:
    """The RunError that stops the run when `err` is the run's fault, else None (a tool's or an episode's)."""
    if isinstance(err, RunError):
        return err
    if storage_fault(err):
        return StorageError(f"cannot write to {out} or its database: {err}")
    if isinstance(err, PromptError):
        return TemplateStop(str(err))
    return None
