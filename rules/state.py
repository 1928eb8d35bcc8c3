"""Struct-of-arrays storage: named numpy arrays sharing a first axis that grows on demand."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray


class Arrays:
    """Named arrays of one length (plus optional trailing width), grown by doubling."""

    def __init__(self, capacity: int = 1024) -> None:
        self.capacity = max(1, capacity)
        self._arrays: dict[str, NDArray[Any]] = {}
        self._fills: dict[str, Any] = {}

    def add(self, name: str, dtype: Any, fill: Any, width: int = 0) -> NDArray[Any]:
        """Declare an array; ``width`` > 0 makes it two-dimensional (capacity, width)."""
        shape = (self.capacity, width) if width else (self.capacity,)
        self._arrays[name] = np.full(shape, fill, dtype=dtype)
        self._fills[name] = fill
        return self._arrays[name]

    def __getitem__(self, name: str) -> NDArray[Any]:
        return self._arrays[name]

    def names(self) -> list[str]:
        """Declared array names."""
        return list(self._arrays)

    def ensure(self, size: int) -> None:
        """Grow every array so that ``size`` rows fit."""
        if size <= self.capacity:
            return
        capacity = self.capacity
        while capacity < size:
            capacity *= 2
        for name, old in self._arrays.items():
            new = np.full((capacity, *old.shape[1:]), self._fills[name], dtype=old.dtype)
            new[: self.capacity] = old
            self._arrays[name] = new
        self.capacity = capacity

    def dump(self, prefix: str, size: int) -> dict[str, NDArray[Any]]:
        """The first ``size`` rows of every array, keyed ``prefix + name``."""
        return {prefix + name: arr[:size] for name, arr in self._arrays.items()}

    def load(self, prefix: str, data: Any, size: int) -> None:
        """Fill the first ``size`` rows from a mapping produced by ``dump``."""
        self.ensure(size)
        for name, arr in self._arrays.items():
            saved = data[prefix + name]
            if saved.shape[1:] != arr.shape[1:]:
                raise ValueError(f"snapshot array {prefix + name} has shape {saved.shape}")
            arr[:size] = saved
