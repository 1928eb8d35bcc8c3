"""The smart-dressing patch BLE profile as pure codecs: bytes in, typed values out.

Encoders are what the patch (and the simulator) send; decoders are what the gateway receives.
Every decoder raises BleDecodeError (BleAuthError for failed authentication) and nothing else.
"""

from contract.ble.address import address_from_str, address_to_str
from contract.ble.bthome import (
    BTHomeAdvert,
    BTHomeObject,
    BTHomeValue,
    bthome_ad_structure,
    decode_bthome_adv,
    encode_bthome_adv,
)
from contract.ble.errors import BleAuthError, BleDecodeError, BleEncodeError
from contract.ble.frame import (
    FrameFlags,
    PatchFlags,
    PatchFrame,
    decode_patch_frame,
    encode_patch_frame,
)
from contract.ble.gatt import (
    DeviceInformation,
    decode_battery_level,
    decode_device_information,
    decode_utf8s,
    encode_battery_level,
    encode_device_information,
    encode_utf8s,
)
from contract.ble.health_thermometer import (
    GattDateTime,
    TemperatureMeasurement,
    TemperatureType,
    celsius_measurement,
    decode_temperature_measurement,
    encode_temperature_measurement,
)
from contract.ble.ieee11073 import (
    MedFloat,
    MedValue,
    Special,
    decode_float,
    decode_sfloat,
    encode_float,
    encode_sfloat,
    quantize,
    to_float,
)
from contract.ble.readings import PatchReadings, advert_readings, frame_readings
from contract.ble.replay import ReplayGuard, ReplayReason

__all__ = [
    "BTHomeAdvert",
    "BTHomeObject",
    "BTHomeValue",
    "BleAuthError",
    "BleDecodeError",
    "BleEncodeError",
    "DeviceInformation",
    "FrameFlags",
    "GattDateTime",
    "MedFloat",
    "MedValue",
    "PatchFlags",
    "PatchFrame",
    "PatchReadings",
    "ReplayGuard",
    "ReplayReason",
    "Special",
    "TemperatureMeasurement",
    "TemperatureType",
    "address_from_str",
    "address_to_str",
    "advert_readings",
    "bthome_ad_structure",
    "celsius_measurement",
    "decode_battery_level",
    "decode_bthome_adv",
    "decode_device_information",
    "decode_float",
    "decode_patch_frame",
    "decode_sfloat",
    "decode_temperature_measurement",
    "decode_utf8s",
    "encode_battery_level",
    "encode_bthome_adv",
    "encode_device_information",
    "encode_float",
    "encode_patch_frame",
    "encode_sfloat",
    "encode_temperature_measurement",
    "encode_utf8s",
    "frame_readings",
    "quantize",
    "to_float",
]
