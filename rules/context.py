"""The engine's shared state: device and series tables, rings and per-rule arrays; no rule logic.

Every evaluator, the reading policy and the snapshot codec work on one ``EngineState``. Series
(device, metric) get dense indices; per series it keeps the last accepted timestamp/value and a
ring of the last ``window_capacity`` readings; per (rule, series), or per (rule, device) for
device-level rules, each evaluator keeps its own arrays in ``state[rule.id]``.

Per device it also keeps the first accepted reading (the patch's application) and when a newer
patch of the same wound superseded it (``retired_at``, see ``rules.wounds``). A rule whose
history is the wound's keeps it on the wound's *anchor* series (the first series of that wound
and metric): ``series_x["owner"]``. Only the current patch of a wound feeds its history.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from rules.columns import DeviceTable
from rules.model import AnyRule, CompositeRule, SilenceRule
from rules.registry import DeviceInfo, Registry, device_matches
from rules.runs import immutable
from rules.state import Arrays, Ring

_ROWS_KEPT = 256  # series arrays whose rows are remembered (a batch's groups, several rules')
NEVER = np.iinfo(np.int64).min
NOT_RETIRED = np.iinfo(np.int64).max
I64 = NDArray[np.int64]
F64 = NDArray[np.float64]
Idx = NDArray[np.intp]
Bool = NDArray[np.bool_]


@dataclass
class EngineStats:
    """Counters for the reading policy and the work done."""

    accepted: int = 0
    dropped_late: int = 0
    dropped_duplicate: int = 0
    evaluations: int = 0  # reading-rule evaluations of value-driven rules
    # Last, so that snapshots written before they existed still load (stats are positional).
    dropped_out_of_window: int = 0  # stamped too far ahead of the clock: see rules.policy
    dropped_invalid: int = 0  # NaN or infinite values: not a reading
    dropped_retired: int = 0  # from a patch a newer patch of the same wound has superseded


def device_level(rule: AnyRule) -> bool:
    """Rules whose state is per device rather than per series."""
    return isinstance(rule, CompositeRule) or (
        isinstance(rule, SilenceRule) and rule.scope.metric is None
    )


def has_filter(rule: AnyRule) -> bool:
    """Whether the rule's scope filters devices by registry fields."""
    scope = rule.scope
    return scope.kind is not None or scope.model is not None or scope.site is not None


class EngineState:
    """Tables and arrays of one engine, grown on demand as devices and series appear."""

    def __init__(
        self,
        rules: list[AnyRule],
        registry: Registry,
        window_capacity: int,
        codes: dict[str, int],
    ) -> None:
        self.rules = rules
        self.registry = registry
        self.window_capacity = window_capacity
        self.codes = codes  # metric name -> code: the catalog's (or a test's reordering)
        self.names = tuple(sorted(codes, key=codes.__getitem__))
        self.width = len(self.names)
        self.devices = DeviceTable()
        self.stats = EngineStats()
        self.clock = 0  # newest accepted timestamp of any series (0 before the first)
        self.n_dev = 0
        self.n_series = 0
        self.dev = Arrays()
        self.dev.add("last_ts", np.int64, 0)
        self.dev.add("first_ts", np.int64, 0)  # first accepted reading: the patch's application
        self.dev.add("retired_at", np.int64, NOT_RETIRED)
        self.dev_x = Arrays()  # derived from the registry: never snapshotted
        self.dev_x.add("wound", np.intp, -1)
        self.dev_x.add("ref_wound", np.intp, -1)
        self.wounds = DeviceTable()  # (patient, wound) keys interned
        self.any_retired = False
        self.newest_first = 0  # the latest first reading of any device (exclusion fast path)
        self.table = Arrays()  # (device, metric code) -> series; rebuilt on restore
        self.table.add("series", np.intp, -1, width=self.width)
        self.scope = Arrays()  # derived from the registry: never snapshotted
        self.filtered = {r.id for r in rules if has_filter(r)}
        for rule in rules:
            self.scope.add(rule.id, np.bool_, False)
        self.series = Arrays()
        self.series.add("dev", np.intp, 0)
        self.series.add("metric", np.int8, 0)
        self.series.add("last_ts", np.int64, 0)
        self.series.add("last_val", np.float64, np.nan)
        self.series.add("ring_head", np.intp, 0)
        self.series_x = Arrays()  # derived (rebuilt on restore), never snapshotted
        self.series_x.add("owner", np.intp, 0)  # whose wound history this series feeds/reads
        self.series_x.add("current", np.bool_, True)  # its device is its wound's newest patch
        # Dense rows per metric: wide per-series state (buckets, baselines) is kept only for the
        # series of its rule's metric, row ``mrow`` among them (in series order).
        self.series_x.add("mrow", np.intp, 0)
        self.metric_rows = np.zeros(self.width, dtype=np.intp)
        self.mstate: dict[str, tuple[int, Arrays]] = {}  # rule id -> (metric code, arrays)
        # The last ``series_index`` call: its devices, metrics, series count and answer.
        self._last_index: tuple[Idx, Idx, int, Idx] | None = None
        # ``rows`` lookups by the identity of their series array (held, so the id stays its).
        self._rows: dict[int, tuple[Idx, Idx]] = {}
        self.anchors: dict[tuple[int, int], int] = {}  # (wound, metric code) -> anchor series
        self.wound_series: dict[tuple[int, int], int] = {}  # (wound, code) -> current series
        self.wound_members: dict[int, list[int]] = {}  # wound -> its devices (first read)
        self.wound_current: dict[int, int] = {}  # wound -> its newest device
        self.ring = Ring(window_capacity)
        # Per metric code: whether its series keep a ring, and whether every reading goes in
        # (window rules) rather than only those inside a sustain run (evidence).
        self.ring_metric = np.zeros(self.width, dtype=np.bool_)
        self.full_ring = np.zeros(self.width, dtype=np.bool_)
        self.scratch = Arrays()  # per-batch working space, never snapshotted
        self.scratch.add("seen_ts", np.int64, NEVER)  # previous reading in the batch
        # Per rule: state that is snapshotted, and state derived from it (rebuilt on restore).
        self.state: dict[str, Arrays] = {r.id: _active_flags() for r in rules}
        self.derived: dict[str, Arrays] = {}
        self.n_active: dict[str, int] = {r.id: 0 for r in rules}

    def metric_state(self, rule_id: str, code: int) -> Arrays:
        """A rule's snapshotted arrays with one row per series of metric ``code``."""
        arrays = Arrays()
        self.mstate[rule_id] = (code, arrays)
        return arrays

    def assign_rows(self, ids: Idx) -> None:
        """Dense metric rows for series ``ids`` (new, in index order); grows metric state."""
        self._rows.clear()
        codes = self.series["metric"][ids].astype(np.intp)
        for code in np.unique(codes).tolist():
            mine = ids[codes == code]
            start = int(self.metric_rows[code])
            self.series_x["mrow"][mine] = np.arange(start, start + len(mine))
            self.metric_rows[code] = start + len(mine)
        for code, arrays in self.mstate.values():
            arrays.ensure(int(self.metric_rows[code]))

    def rows(self, s: Idx) -> Idx:
        """The dense metric rows of series ``s`` (the rules of a metric share one lookup)."""
        known = self._rows.get(id(s))
        if known is not None and known[0] is s:
            return known[1]
        out: Idx = self.series_x["mrow"][s]
        out.flags.writeable = False  # shared by the metric's rules (and ``rules.runs``' cache)
        if len(self._rows) >= _ROWS_KEPT:
            self._rows.clear()
        if immutable(s):  # nothing can change it under the cache
            self._rows[id(s)] = (s, out)
        return out

    def device_id(self, series: int) -> str:
        """The device id of a series."""
        return self.devices.ids[int(self.series["dev"][series])]

    def ensure_series(self, size: int) -> None:
        """Grow every per-series array so that ``size`` series fit."""
        self.series.ensure(size)
        self.series_x.ensure(size)
        self.ring.ensure(size)
        self.scratch.ensure(size)
        for rule in self.rules:
            if not device_level(rule):
                self.state[rule.id].ensure(size)
        for derived in self.derived.values():
            derived.ensure(size)

    def sync_devices(self) -> None:
        """Take in devices interned since the last call: registry scope masks, array sizes."""
        n_new = len(self.devices)
        if n_new == self.n_dev:
            return
        self.dev.ensure(n_new)
        self.dev_x.ensure(n_new)
        self.table.ensure(n_new)
        self.scope.ensure(n_new)
        for rule in self.rules:
            if device_level(rule):
                self.state[rule.id].ensure(n_new)
        new = range(self.n_dev, n_new)
        infos = [self.registry.get(self.devices.ids[i]) for i in new]
        self._wounds_of(new, infos)
        memo: dict[tuple[str, DeviceInfo | None], bool] = {}
        for rule in self.rules:
            mask = self.scope[rule.id]
            if rule.id not in self.filtered:
                mask[self.n_dev : n_new] = True
                continue
            for i, info in zip(new, infos, strict=True):
                key = (rule.id, info)
                if key not in memo:
                    memo[key] = device_matches(rule.scope, info)
                mask[i] = memo[key]
        self.n_dev = n_new

    def _wounds_of(self, new: range, infos: list[DeviceInfo | None]) -> None:
        """Which wound (and reference wound) each new device is on, from the registry."""
        for i, info in zip(new, infos, strict=True):
            if info is not None and info.wound_key is not None:
                self.dev_x["wound"][i] = self.wounds.intern(info.wound_key)
                if info.reference_wound is not None:
                    other = f"{info.patient}\x1f{info.reference_wound}"
                    self.dev_x["ref_wound"][i] = self.wounds.intern(other)

    def series_index(self, dev: Idx, metric: Idx) -> tuple[Idx, Idx]:
        """Series indices for (device, metric) pairs, and the ids of series new in this call.

        A batch of the same pairs as the last one (a fleet reporting steadily) gets the same
        read-only index array back: two comparisons instead of a gather, and lookups keyed by
        its identity (``rules.runs``) find it again.
        """
        last = self._last_index
        if (
            last is not None
            and last[2] == self.n_series
            and np.array_equal(last[0], dev)
            and np.array_equal(last[1], metric)
        ):
            return last[3], last[3][:0]
        index, new = self._series_index(dev, metric)
        index.flags.writeable = False
        self._last_index = (dev.copy(), metric.copy(), self.n_series, index)
        return index, new

    def _series_index(self, dev: Idx, metric: Idx) -> tuple[Idx, Idx]:
        flat = self.table["series"].reshape(-1)
        key = dev * self.width
        key += metric
        index: Idx = flat[key]
        if len(index) == 0 or int(index.min()) >= 0:
            return index, index[:0]
        missing = index < 0
        keys = np.unique(key[missing])
        first = self.n_series
        ids = np.arange(first, first + len(keys), dtype=np.intp)
        size = first + len(keys)
        self.ensure_series(size)
        flat = self.table["series"].reshape(-1)
        flat[keys] = ids
        self.series["dev"][ids] = keys // self.width
        self.series["metric"][ids] = keys % self.width
        self.n_series = size
        self.assign_rows(ids)
        result: Idx = flat[key]
        return result, ids

    def push(self, s: Idx, t: I64, v: F64) -> Idx:
        """Write readings into their series' rings; returns the slots written."""
        head: Idx = self.series["ring_head"][s]
        slot = head * self.ring.capacity
        slot += s  # flat indices scatter faster than 2-D ones
        ring_ts, ring_val = self.ring.flat()
        ring_ts[slot] = t
        ring_val[slot] = v
        nxt = head + 1
        nxt[nxt == self.window_capacity] = 0
        self.series["ring_head"][s] = nxt
        return head

    def metric_mask_names(self, mask: Bool) -> NDArray[np.str_]:
        """Metric names of a per-code mask, for snapshots (never empty: savez needs a dtype)."""
        return np.array([self.names[m] for m in np.flatnonzero(mask).tolist()] or [""])


def _active_flags() -> Arrays:
    state = Arrays()
    state.add("active", np.bool_, False)
    return state
