"""Declarative descriptions of a radar's wire format (issue 19).

A partner's radar is integrated by a description, not by code: which wire
signal (a DBC signal, or a field of a binary layout) fills which column of a
track report (``TRACK_BATCH_DTYPE``), in which unit and with which scale. The
codecs :class:`~drivers.described.dbc_codec.DbcRadarCodec` and
:class:`~drivers.described.binary_codec.BinaryRadarCodec` are built from it
when the configuration is loaded, so every mistake (an unknown signal, a
missing required field, a unit that is not a length) is a one-line error
naming the key before anything runs (docs/config.md, "Described devices").
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from hilgw.tomlconfig import StrictModel

__all__ = [
    "TARGETS",
    "BinaryRadarDescription",
    "CanDbcRadarDescription",
    "FieldSource",
    "LayoutField",
    "TimeSource",
    "TrackFields",
]

_NAME = r"^[A-Za-z_][A-Za-z0-9_]{0,63}$"


class FieldSource(StrictModel):
    """Where one track value comes from: a wire ``signal`` or a constant ``value``.

    The signal's physical value (after its own DBC/layout scale and offset) is
    multiplied by ``scale``, ``offset`` is added, and the result, in ``unit``
    (default: the signal's own unit), is converted to SI.
    """

    signal: str | None = None
    value: float | None = None
    unit: str | None = None
    scale: float = 1.0
    offset: float = 0.0

    @model_validator(mode="after")
    def _one_source(self) -> FieldSource:
        if (self.signal is None) == (self.value is None):
            raise ValueError("give either signal (a wire signal name) or value (a constant)")
        if self.scale == 0:
            raise ValueError("scale must not be 0")
        return self


class TimeSource(FieldSource):
    """The measurement time: seconds since the Unix epoch (``unix``) or since
    UTC midnight (``day``, unwrapped against the receive time, as ASTERIX
    time of day is)."""

    epoch: Literal["unix", "day"] = "unix"


class TrackFields(StrictModel):
    """Track columns and their sources. Absent optional ones: ``time`` is the
    receive time; rates are 0 and not valid; ``sigma_range_rate`` is 300 m/s
    (unknown); ``quality`` is 1; ``coasting`` is false."""

    sensor_track_id: FieldSource
    range: FieldSource
    azimuth: FieldSource
    elevation: FieldSource
    sigma_range: FieldSource
    sigma_azimuth: FieldSource
    sigma_elevation: FieldSource
    time: TimeSource | None = None
    range_rate: FieldSource | None = None
    sigma_range_rate: FieldSource | None = None
    azimuth_rate: FieldSource | None = None
    elevation_rate: FieldSource | None = None
    sigma_azimuth_rate: FieldSource | None = None
    sigma_elevation_rate: FieldSource | None = None
    quality: FieldSource | None = None
    coasting: FieldSource | None = None

    @model_validator(mode="after")
    def _rates_together(self) -> TrackFields:
        rates = ("azimuth_rate", "elevation_rate", "sigma_azimuth_rate", "sigma_elevation_rate")
        given = [r for r in rates if getattr(self, r) is not None]
        if given and len(given) != len(rates):
            missing = sorted(set(rates) - set(given))
            raise ValueError(f"angle rates need all of {', '.join(rates)}; missing {', '.join(missing)}")
        if self.range_rate is not None and self.sigma_range_rate is None:
            raise ValueError("range_rate needs sigma_range_rate")
        return self


#: Track field -> (column of TRACK_BATCH_DTYPE, dimension of its SI unit).
TARGETS: dict[str, tuple[str, str]] = {
    "sensor_track_id": ("sensor_track_id", "ratio"),
    "time": ("sensor_time_ns", "time"),
    "range": ("range_m", "length"),
    "azimuth": ("azimuth_rad", "angle"),
    "elevation": ("elevation_rad", "angle"),
    "range_rate": ("range_rate_mps", "speed"),
    "azimuth_rate": ("azimuth_rate_radps", "angular_rate"),
    "elevation_rate": ("elevation_rate_radps", "angular_rate"),
    "sigma_range": ("sigma_range_m", "length"),
    "sigma_azimuth": ("sigma_azimuth_rad", "angle"),
    "sigma_elevation": ("sigma_elevation_rad", "angle"),
    "sigma_range_rate": ("sigma_range_rate_mps", "speed"),
    "sigma_azimuth_rate": ("sigma_azimuth_rate_radps", "angular_rate"),
    "sigma_elevation_rate": ("sigma_elevation_rate_radps", "angular_rate"),
    "quality": ("quality", "ratio"),
    "coasting": ("coasting", "ratio"),
}


class CanDbcRadarDescription(StrictModel):
    """A CAN radar whose track frame is a message of the vendor's DBC file.

    One track per frame. ``dbc`` is relative to the configuration file's
    folder; ``track_frame`` is the message's name or arbitration id (before
    the device's ``can_id_offset``).
    """

    dbc: Path
    track_frame: str | int
    fields: TrackFields


#: Struct types of a binary layout -> (numpy kind+size, bytes).
LAYOUT_TYPES: dict[str, str] = {
    "u8": "u1", "i8": "i1", "u16": "u2", "i16": "i2", "u32": "u4", "i32": "i4",
    "u64": "u8", "i64": "i8", "f32": "f4", "f64": "f8",
}  # fmt: skip


class LayoutField(StrictModel):
    """One field of a binary frame, in order: a name, a struct type (or
    ``pad`` of ``size`` bytes), like a DBC signal a ``scale``/``offset`` to
    its physical value in ``unit``, and optionally a ``const`` the frame must
    carry (a message type, a magic number)."""

    name: str = Field(pattern=_NAME)
    type: Literal["u8", "i8", "u16", "i16", "u32", "i32", "u64", "i64", "f32", "f64", "pad"]
    size: int = Field(default=1, ge=1, le=1024)
    scale: float = 1.0
    offset: float = 0.0
    unit: str | None = None
    const: int | None = None

    @model_validator(mode="after")
    def _pad_or_value(self) -> LayoutField:
        if self.type != "pad" and self.size != 1:
            raise ValueError("size is for type = 'pad' only")
        if self.const is not None and (self.type == "pad" or self.type.startswith("f")):
            raise ValueError("const needs an integer type")
        if self.scale == 0:
            raise ValueError("scale must not be 0")
        return self


class BinaryRadarDescription(StrictModel):
    """A serial radar whose frame is a fixed struct, framed by one of
    :mod:`drivers.framing`'s schemes. One track per frame."""

    #: ``cobs_crc16``: COBS(payload || CRC-16/CCITT-FALSE) || 0x00 (drivers/framing.py).
    framing: Literal["cobs_crc16"] = "cobs_crc16"
    byte_order: Literal["little", "big"]
    layout: list[LayoutField] = Field(min_length=1)
    fields: TrackFields

    @model_validator(mode="after")
    def _unique_names(self) -> BinaryRadarDescription:
        seen: set[str] = set()
        for f in self.layout:
            if f.name in seen:
                raise ValueError(f"layout: field {f.name!r} appears twice")
            seen.add(f.name)
        return self
