"""Resident models keyed by what they are, so that the captioner and both judges share one Qwen2.5-VL."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any


class ModelPool:
    def __init__(self) -> None:
        self._models: dict[tuple[Any, ...], Any] = {}
        self._lock = threading.Lock()

    def get(self, key: tuple[Any, ...], load: Callable[[], Any]) -> Any:
        with self._lock:
            if key not in self._models:
                self._models[key] = load()
            return self._models[key]
