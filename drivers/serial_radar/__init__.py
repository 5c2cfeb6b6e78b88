"""Serial radar front-end protocol (docs/icd/serial-radar.md): events and sans-I/O codec.

Gateway side::

    codec = SerialRadarCodec(Role.GATEWAY, sensor_id=7)
    codec.receive_data(chunk)
    for event in codec.drain():  # TrackReportBatch | Status | Rejected | TrackReport
        ...

Device side (emulator)::

    codec = SerialRadarCodec(Role.DEVICE, sensor_id=7)
    port.write(codec.send(Status(...)))
    port.write(codec.encode_track_batch(reports))  # TRACK_BATCH_DTYPE array
"""

from drivers.serial_radar.codec import SerialRadarCodec, SerialRadarEvent
from drivers.serial_radar.events import TRACK_BATCH_DTYPE, Status, TrackReport, TrackReportBatch
from drivers.serial_radar.icd import PROTOCOL_VERSION, TRACK_WIRE_DTYPE, MessageType, SensorState

__all__ = [
    "PROTOCOL_VERSION",
    "TRACK_BATCH_DTYPE",
    "TRACK_WIRE_DTYPE",
    "MessageType",
    "SensorState",
    "SerialRadarCodec",
    "SerialRadarEvent",
    "Status",
    "TrackReport",
    "TrackReportBatch",
]
