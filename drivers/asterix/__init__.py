"""EUROCONTROL ASTERIX (CAT034/048/062/065) sans-I/O codec: docs/icd/asterix.md."""

from drivers.asterix.codec import DEFAULT_EDITIONS, AsterixCodec, AsterixEvent
from drivers.asterix.events import (
    SYSTEM_TRACK_DTYPE,
    TARGET_REPORT_DTYPE,
    ServiceMessage034,
    ServiceMessage065,
    SystemTrack062,
    SystemTrackBatch,
    TargetReport048,
    TargetReportBatch,
)

__all__ = [
    "DEFAULT_EDITIONS",
    "SYSTEM_TRACK_DTYPE",
    "TARGET_REPORT_DTYPE",
    "AsterixCodec",
    "AsterixEvent",
    "ServiceMessage034",
    "ServiceMessage065",
    "SystemTrack062",
    "SystemTrackBatch",
    "TargetReport048",
    "TargetReportBatch",
]
