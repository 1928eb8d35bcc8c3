"""Index arrays that are runs of consecutive rows, as slices: views instead of gathers.

A metric's state is dense by row and a steady fleet reports its series in the order they were
first seen, so the rows of a round's readings are usually one run ``a, a+1, …, a+n-1``. Indexing
with ``slice(a, a + n)`` reads and updates in place (a view) where an index array gathers and
scatters: ``arr[r] += x`` costs about ten times as much with an index array (measured, 11,000
rows). Every rule of a metric asks about the same rows array, so the answer is remembered for
immutable arrays (which cannot change under the cache).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

Idx = NDArray[np.intp]

# The last immutable arrays asked about, by id (each held, so its id cannot be reused while
# it is here), with the answers; the oldest go first. Bounded by count and by the elements held
# (a fleet whose batches change shape would otherwise keep a batch-sized array per batch).
_KEPT = 64
_KEPT_ELEMENTS = 1 << 20  # 8 MiB of indices
_seen: dict[int, tuple[Idx, slice | None]] = {}
_held = [0]  # elements of the arrays in ``_seen``


def run_slice(o: Idx) -> slice | None:
    """``o`` as a slice if it is a run of consecutive increasing indices, else None."""
    known = _seen.get(id(o))
    if known is not None and known[0] is o:
        return known[1]
    answer = _run_of(o)
    if immutable(o) and len(o) <= _KEPT_ELEMENTS:
        while _seen and (len(_seen) >= _KEPT or _held[0] + len(o) > _KEPT_ELEMENTS):
            oldest, _ = _seen.pop(next(iter(_seen)))
            _held[0] -= len(oldest)
        _seen[id(o)] = (o, answer)
        _held[0] += len(o)
    return answer


def as_index(o: Idx) -> Idx | slice:
    """What to index with for rows ``o``: a slice for a run (a view), else ``o`` itself.

    A view aliases the state: read it before the state it shows is written, or copy it.
    """
    run = run_slice(o)
    return o if run is None else run


def immutable(arr: NDArray[Any]) -> bool:
    """Whether nothing can change ``arr``: read-only, and so is what it is a view of."""
    if arr.flags.writeable:
        return False
    base = arr.base
    return base is None or (isinstance(base, np.ndarray) and not base.flags.writeable)


def _run_of(o: Idx) -> slice | None:
    n = len(o)
    if n < 2:
        return slice(int(o[0]), int(o[0]) + 1) if n else None
    a = int(o[0])
    if int(o[-1]) - a != n - 1:
        return None
    # n values spanning n - 1 are consecutive exactly when they strictly increase (one
    # comparison pass, no temporary the size of o).
    if not bool((o[1:] > o[:-1]).all()):
        return None
    return slice(a, a + n)
