"""Torch's out-of-memory error is recognised by its type where a model runs, and becomes ours."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from models.device_memory import raises_out_of_device_memory  # noqa: E402
from models.protocols import OutOfDeviceMemory  # noqa: E402


@raises_out_of_device_memory
def allocate(error: Exception) -> None:
    raise error


def test_torch_out_of_memory_becomes_out_of_device_memory() -> None:
    with pytest.raises(OutOfDeviceMemory, match="Tried to allocate 20.00 GiB") as err:
        allocate(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB\nmore detail"))
    assert isinstance(err.value.__cause__, torch.cuda.OutOfMemoryError)


def test_other_runtime_errors_pass_unchanged_whatever_they_say() -> None:
    with pytest.raises(RuntimeError, match="out of memory") as err:
        allocate(RuntimeError("the planner ran out of memory of its own"))
    assert not isinstance(err.value, OutOfDeviceMemory)
