"""Whose fault a failure is (agent/faults.py): every kind a tool can report is in the one table, an episode's
fault is never retried, and the run's faults are sorted from the exceptions that carry them."""

from __future__ import annotations

import errno
from pathlib import Path
from typing import get_args

import pytest

from agent.faults import FAULTS, RunError, StorageError, TemplateStop, run_stop
from agent.policy import PolicyConfig, after_failure
from prompts.loader import PromptError
from tools.base import ErrorKind


def test_every_kind_of_tool_failure_says_whose_it_is() -> None:
    assert set(get_args(ErrorKind)) <= FAULTS.keys()


@pytest.mark.parametrize("kind", [k for k, (whose, _) in FAULTS.items() if whose != "tool"])
def test_a_failure_that_is_not_the_tools_is_not_retried(kind: str) -> None:
    cfg = PolicyConfig(reseed_on_errors=list(FAULTS), rewrite_on_errors=list(FAULTS))
    assert after_failure(kind, 0, cfg) == "discard"


def test_the_runs_faults_stop_it_and_others_do_not() -> None:
    out = Path("out")
    full = run_stop(OSError(errno.ENOSPC, "No space left on device"), out)
    assert isinstance(full, StorageError) and str(out) in str(full)
    assert isinstance(run_stop(PromptError("judge_video.j2: line 3"), out), TemplateStop)
    stopped = RunError("no clips")
    assert run_stop(stopped, out) is stopped
    assert run_stop(OSError(errno.ENOENT, "gone"), out) is None and run_stop(ValueError("bad frame"), out) is None
