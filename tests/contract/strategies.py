"""Hypothesis strategies for valid and hostile contract inputs, shared by the contract tests."""

from __future__ import annotations

from hypothesis import strategies as st

from contract import KIND_METRICS, METRICS, DeviceKind, Reading, TimeWindow
from contract.validation import ID_RESERVED, INT64_MAX, MAX_ID_LENGTH, MAX_TS_US

NOW_US = 1_780_000_000_000_000  # 2026-05-28T20:26:40Z: a fixed "now" keeps the tests pure
WINDOW = TimeWindow(NOW_US)

# Printable characters of every script, without MQTT's reserved ones.
_ID_CHARS = st.characters(
    categories=("L", "N", "P", "S"), exclude_characters=ID_RESERVED, codec="utf-8"
)
valid_ids = st.text(_ID_CHARS, min_size=1, max_size=24) | st.sampled_from(
    ["patch-0001", "us-000", "endo-001", "gw-1", "AA:BB:CC:DD:EE:FF", "x" * MAX_ID_LENGTH]
)
# One character that no id may hold: control, format, separator, surrogate, or reserved.
_BAD_CHAR = st.characters(categories=("Cc", "Cf", "Cs", "Co", "Zl", "Zp")) | st.sampled_from(
    [*ID_RESERVED, "\x00", "\n", "\r", "\x1b", "\ud800", "\udfff", "\u00a0"]
)


@st.composite
def hostile_ids(draw: st.DrawFn) -> object:
    """An id that must be refused: a bad character somewhere, too long, empty, or no text."""
    choice = draw(st.integers(0, 3))
    if choice == 0:
        head, tail = draw(valid_ids), draw(valid_ids)
        return head[:10] + draw(_BAD_CHAR) + tail[:10]
    if choice == 1:
        return "d" * draw(st.integers(MAX_ID_LENGTH + 1, 4 * MAX_ID_LENGTH))
    if choice == 2:
        return ""
    return draw(st.integers() | st.none() | st.booleans() | st.lists(st.text(), max_size=2))


in_window_ts = st.integers(WINDOW.lo_us, WINDOW.hi_us)
valid_seqs = st.integers(0, INT64_MAX)
# Timestamps outside the window, but still 64-bit: too old, too far ahead, unrepresentable.
out_of_window_ts = (
    st.integers(-(2**63), WINDOW.lo_us - 1)
    | st.integers(WINDOW.hi_us + 1, 2**63 - 1)
    | st.sampled_from([0, 1, MAX_TS_US + 1, 2**63 - 1, -(2**63)])
)
oversized_ints = st.integers(2**63, 2**80) | st.integers(-(2**80), -(2**63) - 1)


@st.composite
def metric_values(draw: st.DrawFn, metric: str) -> float:
    """A value ``metric``'s sensor can physically report."""
    spec = METRICS[metric]
    if spec.integral:
        return float(draw(st.integers(int(spec.low), int(spec.high))))
    return draw(st.floats(spec.low, spec.high, allow_nan=False))


@st.composite
def valid_readings(draw: st.DrawFn) -> Reading:
    """A reading that satisfies the contract and the test window."""
    metric = draw(st.sampled_from(sorted(METRICS)))
    return Reading(
        device_id=draw(valid_ids),
        metric=metric,
        value=draw(metric_values(metric)),
        unit=METRICS[metric].unit,
        ts_us=draw(in_window_ts),
        seq=draw(valid_seqs),
    )


@st.composite
def equipment_docs(draw: st.DrawFn) -> dict[str, object]:
    """A valid equipment message as a JSON document, metrics of its kind only."""
    kind = draw(st.sampled_from([DeviceKind.ULTRASOUND, DeviceKind.ENDOSCOPE, DeviceKind.PATCH]))
    names = draw(st.lists(st.sampled_from(sorted(KIND_METRICS[kind])), min_size=1, unique=True))
    return {
        "device_id": draw(valid_ids),
        "kind": kind.value,
        "seq": draw(valid_seqs),
        "ts_us": draw(in_window_ts),
        "metrics": {name: draw(metric_values(name)) for name in names},
    }
