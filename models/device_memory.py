"""Torch's out-of-memory error becomes ours (OutOfDeviceMemory) where a model runs, so the layers above
tell it from other failures by its type, never by the words of its message."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import torch

from models.protocols import OutOfDeviceMemory

Method = TypeVar("Method", bound=Callable[..., Any])


def raises_out_of_device_memory(method: Method) -> Method:
    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return method(*args, **kwargs)
        except torch.OutOfMemoryError as err:  # torch.cuda.OutOfMemoryError is the same class
            raise OutOfDeviceMemory(str(err).strip().splitlines()[0] if str(err).strip() else "no detail") from err

    return wrapper  # type: ignore[return-value]
