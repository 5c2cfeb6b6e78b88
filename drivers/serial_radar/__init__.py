"""Serial radar front-end protocol (docs/icd/serial-radar.md): events and sans-I/O codec.

Gateway side::

    codec = SerialRadarCodec(Role.GATEWAY, sensor_id=7)
    codec.receive_data(chunk)
    for event in codec.drain():  # TrackReportBatch | Status (drivers.radar) | Rejected | TrackReport
        ...

Device side (emulator)::

    codec = SerialRadarCodec(Role.DEVICE, sensor_id=7)
    port.write(codec.send(Status(...)))
    port.write(codec.encode_track_batch(reports))  # drivers.radar.TRACK_BATCH_DTYPE array
"""

from drivers.serial_radar.codec import SerialRadarCodec, SerialRadarEvent
from drivers.serial_radar.events import TrackReport
from drivers.serial_radar.icd import PROTOCOL_VERSION, TRACK_WIRE_DTYPE, MessageType

__all__ = [
    "PROTOCOL_VERSION",
    "TRACK_WIRE_DTYPE",
    "MessageType",
    "SerialRadarCodec",
    "SerialRadarEvent",
    "TrackReport",
]
