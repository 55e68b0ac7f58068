"""A tool's failure gets its kind from its type, never from the words of its message."""

from __future__ import annotations

import pickle

import pytest

from models.protocols import OutOfDeviceMemory
from tools.base import ToolError, as_tool_error


@pytest.mark.parametrize(
    ("raised", "kind"),
    [
        (OutOfDeviceMemory("CUDA out of memory. Tried to allocate 2 GiB"), "oom"),
        (MemoryError("cannot allocate"), "oom"),
        (RuntimeError("the planner ran out of memory of its own"), "tool_failed"),
        (ValueError("bad"), "tool_failed"),
        (ToolError("bad_input", "a broken clip", field="clip_path"), "bad_input"),
    ],
)
def test_tool_error_kind_follows_the_exception_type(raised: Exception, kind: str) -> None:
    err = as_tool_error("propagate", raised)
    assert err.kind == kind and ("propagate" in err.detail or err is raised)


def test_a_tool_error_crosses_a_process_boundary_whole() -> None:
    err = pickle.loads(pickle.dumps(ToolError("category_unfit", "no sky in this clip", field="category")))
    assert (err.kind, err.detail, err.field, str(err)) == (
        "category_unfit",
        "no sky in this clip",
        "category",
        "category_unfit: category: no sky in this clip",
    )
