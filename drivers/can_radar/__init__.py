"""CAN radar front-end protocol (docs/icd/can-radar.md): DBC files and a sans-I/O codec.

Gateway side::

    codec = CanRadarCodec(Role.GATEWAY, sensor_id=7)
    for event in codec.receive_frames(frames):   # hilgw.can.CanFrame(arbitration_id, data, ...)
        ...                                      # TrackReportBatch | Status | Rejected

Device side (emulator)::

    codec = CanRadarCodec(Role.DEVICE, fd=False)
    frames = codec.encode_reports(reports)       # TRACK_BATCH_DTYPE array
    frame = codec.send(Status(...))

The events are the serial radar's (:mod:`drivers.serial_radar.events`), so the
gateway normalises both radars with the same code.
"""

from drivers.can_radar.codec import CanRadarCodec, CanRadarEvent
from drivers.can_radar.icd import CLASSIC_DB, FD_DB
from drivers.serial_radar.events import TRACK_BATCH_DTYPE, Status, TrackReportBatch
from drivers.serial_radar.icd import SensorState

__all__ = [
    "CLASSIC_DB",
    "FD_DB",
    "TRACK_BATCH_DTYPE",
    "CanRadarCodec",
    "CanRadarEvent",
    "SensorState",
    "Status",
    "TrackReportBatch",
]
