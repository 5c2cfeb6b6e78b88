"""Fusion: turns batches of normalised sensor reports into the system track
picture. Pure numpy over stacked arrays; the asyncio side only feeds it."""

from gateway.fusion.api import (
    KIND_PLOT,
    KIND_SENSOR_TRACK,
    STATUS_COASTING,
    STATUS_CONFIRMED,
    STATUS_DROPPED,
    STATUS_TENTATIVE,
    FusionEngine,
    ReportArrays,
    SensorGeometry,
    TrackArrays,
)

__all__ = [
    "KIND_PLOT",
    "KIND_SENSOR_TRACK",
    "STATUS_COASTING",
    "STATUS_CONFIRMED",
    "STATUS_DROPPED",
    "STATUS_TENTATIVE",
    "FusionEngine",
    "ReportArrays",
    "SensorGeometry",
    "TrackArrays",
]
