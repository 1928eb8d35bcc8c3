"""What simulated equipment answers to each remote-diagnosis command.

Pure: a command, its validated arguments and the equipment model at simulated time ``t_s`` in;
a status, a result and a message out. Scripted faults show: a degraded probe fails elements of
its impedance test, a neutral-to-ground fault fails the N-G measurement and the self test, an
error burst fills the error log.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from contract.commands import CATALOGUE, CommandName, CommandStatus
from simulator.equipment import ERROR_CODES, NOMINAL_MAINS_V, EquipmentModel
from simulator.faults import FaultKind, active_fault

MAINS_BAND = 0.10  # ±10 % of nominal
NG_LIMIT_V = 2.0  # above this the earth is suspect
PROBE_ELEMENTS = 64
ELEMENT_OHMS = 50.0
ELEMENT_LIMIT_OHMS = 200.0  # an element above this is open (broken wire or crystal)
PROBE_HEALTH_LIMIT = 80.0


@dataclass(frozen=True, slots=True)
class Outcome:
    """One command's answer."""

    status: CommandStatus
    result: dict[str, Any]
    message: str = ""


def run_command(
    model: EquipmentModel, command: str, args: Mapping[str, Any], t_s: float
) -> Outcome:
    """Answer ``command`` (arguments already validated) as ``model`` would at ``t_s``."""
    name = CommandName(command)
    if model.kind not in CATALOGUE[name].kinds:
        return Outcome(CommandStatus.REJECTED, {}, f"{model.kind} does not support {name}")
    match name:
        case CommandName.SELF_TEST:
            return self_test(model, t_s)
        case CommandName.READ_ERROR_LOG:
            return error_log(model, t_s, int(args.get("max_entries", 20)))
        case CommandName.PROBE_IMPEDANCE_TEST:
            return probe_impedance(model, t_s, float(args.get("frequency_khz", 5.0)))
        case CommandName.MAINS_NG_MEASUREMENT:
            return mains_ng(model, t_s, int(args.get("samples", 5)))
        case CommandName.REBOOT:
            return Outcome(CommandStatus.OK, {"rebooted": True, "delay_s": args.get("delay_s", 0)})


def self_test(model: EquipmentModel, t_s: float) -> Outcome:
    """Supply, earth, probe and error state: each check passes or names what it saw."""
    sample = model.sample(t_s)
    checks = {
        "mains": abs(sample.mains_voltage - NOMINAL_MAINS_V) <= MAINS_BAND * NOMINAL_MAINS_V,
        "earth": sample.ng_voltage <= NG_LIMIT_V,
        "probe": sample.probe_health >= PROBE_HEALTH_LIMIT,
        "errors": sample.error_code == 0,
    }
    failed = sorted(name for name, ok in checks.items() if not ok)
    result = {
        "checks": checks,
        "failed": failed,
        "mains_voltage": sample.mains_voltage,
        "ng_voltage": sample.ng_voltage,
        "probe_health": sample.probe_health,
        "error_code": sample.error_code,
    }
    status = CommandStatus.FAILED if failed else CommandStatus.OK
    return Outcome(status, result, f"failed: {', '.join(failed)}" if failed else "all passed")


def error_log(model: EquipmentModel, t_s: float, max_entries: int) -> Outcome:
    """The newest error-log entries: one per burst minute the fault scripted so far."""
    entries: list[dict[str, Any]] = []
    for fault in model.faults:
        if fault.kind is not FaultKind.ERROR_BURST or fault.start_s > t_s:
            continue
        end = min(t_s, fault.start_s + fault.duration_s)
        minutes = int((end - fault.start_s) // 60) + 1
        for minute in range(minutes):
            at = fault.start_s + 60 * minute
            code = ERROR_CODES[_stable(f"{model.device_id}/{minute}") % len(ERROR_CODES)]
            entries.append({"t_s": at, "code": code})
    entries.sort(key=lambda e: e["t_s"], reverse=True)
    return Outcome(
        CommandStatus.OK,
        {"entries": entries[:max_entries], "total": len(entries)},
        f"{len(entries)} entries",
    )


def probe_impedance(model: EquipmentModel, t_s: float, frequency_khz: float) -> Outcome:
    """Every element's impedance; a degrading probe loses elements as its health falls."""
    rng = np.random.default_rng(_stable(f"{model.device_id}/probe"))
    ohms = ELEMENT_OHMS * (1.0 + 0.05 * rng.standard_normal(PROBE_ELEMENTS))
    ohms *= (5.0 / frequency_khz) ** 0.1  # a little frequency dependence
    degradation = active_fault(model.faults, FaultKind.PROBE_DEGRADATION, t_s)
    if degradation is not None:
        # One element lost at once, then one more every 10 simulated minutes.
        lost = min(PROBE_ELEMENTS, 1 + int(degradation.elapsed(t_s) // 600))
        for index in rng.choice(PROBE_ELEMENTS, size=lost, replace=False):
            ohms[index] = 1e6  # open
    failing = sorted(int(i) for i in np.flatnonzero(ohms > ELEMENT_LIMIT_OHMS))
    result = {
        "frequency_khz": frequency_khz,
        "elements": PROBE_ELEMENTS,
        "failing_elements": failing,
        "impedance_ohm": [round(float(v), 1) for v in ohms],
        "limit_ohm": ELEMENT_LIMIT_OHMS,
    }
    if failing:
        return Outcome(CommandStatus.FAILED, result, f"{len(failing)} element(s) open")
    return Outcome(CommandStatus.OK, result, "every element within limits")


def mains_ng(model: EquipmentModel, t_s: float, samples: int) -> Outcome:
    """Supply and neutral-to-ground voltage over ``samples`` one-second samples."""
    taken = [model.sample(t_s + i) for i in range(samples)]
    mains = [s.mains_voltage for s in taken]
    ng = [s.ng_voltage for s in taken]
    problems = []
    if min(mains) < NOMINAL_MAINS_V * (1 - MAINS_BAND) or max(mains) > NOMINAL_MAINS_V * (
        1 + MAINS_BAND
    ):
        problems.append("mains out of band")
    if max(ng) > NG_LIMIT_V:
        problems.append("neutral-to-ground above limit")
    result = {
        "samples": samples,
        "mains_v": {"min": min(mains), "max": max(mains), "mean": round(sum(mains) / samples, 1)},
        "ng_v": {"min": min(ng), "max": max(ng), "mean": round(sum(ng) / samples, 2)},
        "ng_limit_v": NG_LIMIT_V,
        "kind": str(model.kind),
    }
    if problems:
        return Outcome(CommandStatus.FAILED, result, "; ".join(problems))
    return Outcome(CommandStatus.OK, result, "within limits")


def _stable(text: str) -> int:
    """A hash that is the same in every process (``hash()`` of text is salted)."""
    return zlib.crc32(text.encode())
