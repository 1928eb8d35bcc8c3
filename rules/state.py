"""Struct-of-arrays storage: named numpy arrays sharing a first axis that grows on demand."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from rules.signals import EMPTY_TS


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
        """Fill the first ``size`` rows from a mapping produced by ``dump``.

        Arrays the mapping lacks (a snapshot older than them) keep their fill value.
        """
        self.ensure(size)
        for name, arr in self._arrays.items():
            if prefix + name not in data:
                continue
            saved = data[prefix + name]
            if saved.shape[1:] != arr.shape[1:]:
                raise ValueError(f"snapshot array {prefix + name} has shape {saved.shape}")
            arr[:size] = saved


class Ring:
    """Per-series ring buffers of (ts, value), stored slot-major: ``ts[slot, series]``.

    Slot-major because a batch pushes one reading onto many series at once: when their heads
    agree (a fleet reporting at a steady rate) the push writes one contiguous stretch of a row
    instead of one cache line per series. Snapshots use the series-major ``(series, width)``
    layout of the first format.
    """

    def __init__(self, width: int, capacity: int = 1024) -> None:
        self.width = width
        self.capacity = max(1, capacity)
        self.ts: NDArray[np.int64] = np.full((width, self.capacity), EMPTY_TS, dtype=np.int64)
        self.val: NDArray[np.float64] = np.zeros((width, self.capacity), dtype=np.float64)

    def ensure(self, size: int) -> None:
        """Grow so that ``size`` series fit."""
        if size <= self.capacity:
            return
        capacity = self.capacity
        while capacity < size:
            capacity *= 2
        ts = np.full((self.width, capacity), EMPTY_TS, dtype=np.int64)
        val = np.zeros((self.width, capacity), dtype=np.float64)
        ts[:, : self.capacity] = self.ts
        val[:, : self.capacity] = self.val
        self.ts, self.val, self.capacity = ts, val, capacity

    def flat(self) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
        """Flat views; slot ``k`` of series ``s`` is at ``k * capacity + s``."""
        return self.ts.reshape(-1), self.val.reshape(-1)

    def rows(self, series: NDArray[np.intp]) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
        """Series-major copies ``(len(series), width)`` of the given series' rings."""
        return self.ts[:, series].T, self.val[:, series].T

    def clear(self, series: NDArray[np.intp]) -> None:
        """Empty the given series' rings."""
        self.ts[:, series] = EMPTY_TS
        self.val[:, series] = 0.0

    def dump(self, prefix: str, size: int) -> dict[str, NDArray[Any]]:
        """The first ``size`` series, series-major, keyed ``prefix + ring_ts/ring_val``."""
        return {
            prefix + "ring_ts": np.ascontiguousarray(self.ts[:, :size].T),
            prefix + "ring_val": np.ascontiguousarray(self.val[:, :size].T),
        }

    def load(self, prefix: str, data: Any, size: int) -> None:
        """Fill the first ``size`` series from a mapping produced by ``dump``."""
        self.ensure(size)
        for name, arr in (("ring_ts", self.ts), ("ring_val", self.val)):
            saved = data[prefix + name]
            if saved.shape != (size, self.width):
                raise ValueError(f"snapshot array {prefix + name} has shape {saved.shape}")
            arr[:, :size] = saved.T
