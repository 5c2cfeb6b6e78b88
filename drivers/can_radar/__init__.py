"""CAN radar front-end protocol (docs/icd/can-radar.md): DBC files and a sans-I/O codec.

Gateway side::

    codec = CanRadarCodec(Role.GATEWAY, sensor_id=7)
    for event in codec.receive_frames(frames):   # hilgw.can.CanFrame(arbitration_id, data, ...)
        ...                                      # TrackReportBatch | Status | Rejected

Device side (emulator)::

    codec = CanRadarCodec(Role.DEVICE, fd=False)
    frames = codec.encode_reports(reports)       # TRACK_BATCH_DTYPE array
    frame = codec.send(Status(...))

The events are every radar's (:mod:`drivers.radar`), so the gateway
normalises all radars with the same code.
"""

from drivers.can_radar.codec import CanRadarCodec, CanRadarEvent
from drivers.can_radar.icd import CLASSIC_DB, FD_DB

__all__ = [
    "CLASSIC_DB",
    "FD_DB",
    "CanRadarCodec",
    "CanRadarEvent",
]
