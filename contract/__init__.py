"""vigil's shared data contract: readings, batches, the metric catalog, wire codecs, topics.

Every other package depends on this one; it depends on none of them.
"""

from contract.alert import AlertEvent, AlertTransition, Severity, decode_alert
from contract.baseline import WoundBaseline
from contract.catalog import KIND_METRICS, METRICS, DeviceKind, MetricSpec, metric_spec
from contract.codec import (
    MAX_PAYLOAD_BYTES,
    WIRE_VERSION,
    DecodedBatch,
    decode_batch,
    encode_batch,
)
from contract.commands import (
    CATALOGUE,
    CommandName,
    CommandRequest,
    CommandResult,
    CommandSpec,
    CommandStatus,
    EquipmentReply,
    decode_command_request,
    decode_command_result,
    decode_equipment_reply,
)
from contract.confirm import (
    CONFIRM_VERSION,
    Confirmation,
    authentic,
    confirmation_mac,
    decode_confirmation,
    encode_confirmation,
)
from contract.equipment import (
    EquipmentMessage,
    EquipmentReadings,
    decode_equipment_message,
    equipment_readings,
)
from contract.errors import ContractError
from contract.presence import (
    DeviceInfoReport,
    PresenceKind,
    PresenceReason,
    PresenceState,
    PresenceStatus,
    decode_device_info,
    decode_presence,
)
from contract.reading import Batch, Reading, RejectedReading, check_reading, reading_problem
from contract.validation import OutOfWindow, TimeWindow

__all__ = [
    "CATALOGUE",
    "CONFIRM_VERSION",
    "KIND_METRICS",
    "MAX_PAYLOAD_BYTES",
    "METRICS",
    "WIRE_VERSION",
    "AlertEvent",
    "AlertTransition",
    "Batch",
    "CommandName",
    "CommandRequest",
    "CommandResult",
    "CommandSpec",
    "CommandStatus",
    "Confirmation",
    "ContractError",
    "DecodedBatch",
    "DeviceInfoReport",
    "DeviceKind",
    "EquipmentMessage",
    "EquipmentReadings",
    "EquipmentReply",
    "MetricSpec",
    "OutOfWindow",
    "PresenceKind",
    "PresenceReason",
    "PresenceState",
    "PresenceStatus",
    "Reading",
    "RejectedReading",
    "Severity",
    "TimeWindow",
    "WoundBaseline",
    "authentic",
    "check_reading",
    "confirmation_mac",
    "decode_alert",
    "decode_batch",
    "decode_command_request",
    "decode_command_result",
    "decode_confirmation",
    "decode_device_info",
    "decode_equipment_message",
    "decode_equipment_reply",
    "decode_presence",
    "encode_batch",
    "encode_confirmation",
    "equipment_readings",
    "metric_spec",
    "reading_problem",
]
