"""A compiled signal -> track-column mapping, both ways (sans-I/O).

Decoding turns columns of physical signal values (one array per signal, one
row per frame) into a ``TRACK_BATCH_DTYPE`` array in SI units; encoding (the
device role, for emulators) turns such an array back into physical signal
values. Both use the same :class:`Mapping`, built once from a
:class:`~drivers.described.description.TrackFields` and the signals' units.
"""

from __future__ import annotations

import math
from collections.abc import Mapping as MappingABC
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from drivers.described.description import TARGETS, TimeSource, TrackFields
from drivers.described.units import factor
from drivers.radar import TRACK_BATCH_DTYPE

__all__ = ["ColumnRule", "TrackMapping", "compile_mapping"]

_NS = 1_000_000_000
_DAY_NS = 86_400 * _NS
_TWO_PI = 2.0 * math.pi
#: Range-rate sigma of a radar that measures none: "unknown" for fusion.
UNKNOWN_RANGE_RATE_SIGMA_MPS = 300.0
_SIGMAS = tuple(c for c, _ in TARGETS.values() if c.startswith("sigma_"))


@dataclass(frozen=True, slots=True)
class ColumnRule:
    """``column = ((signal or value) * scale + offset) * si``."""

    column: str
    signal: str | None
    value: float
    scale: float
    offset: float
    si: float


@dataclass(frozen=True, slots=True)
class TrackMapping:
    rules: tuple[ColumnRule, ...]
    #: "unix" or "day", or None: the receive time is the measurement time.
    time_epoch: str | None
    rates_valid: bool

    @property
    def signals(self) -> frozenset[str]:
        """The wire signals the mapping reads."""
        return frozenset(r.signal for r in self.rules if r.signal is not None)

    def decode(
        self, phys: MappingABC[str, npt.NDArray[np.float64]], n: int, t_rx: int
    ) -> tuple[npt.NDArray[np.void], npt.NDArray[np.bool_]]:
        """Rows from signal columns; and which rows are sound (finite, range >= 0, sigmas > 0)."""
        arr = np.zeros(n, TRACK_BATCH_DTYPE)
        arr["quality"] = 1.0
        arr["sigma_range_rate_mps"] = UNKNOWN_RANGE_RATE_SIGMA_MPS
        arr["sensor_time_ns"] = t_rx
        arr["rates_valid"] = self.rates_valid
        ok = np.ones(n, bool)
        for r in self.rules:
            src = phys[r.signal] if r.signal is not None else np.full(n, r.value)
            si = (np.asarray(src, np.float64) * r.scale + r.offset) * r.si
            ok &= np.isfinite(si)
            si = np.where(np.isfinite(si), si, 0.0)
            if r.column == "sensor_time_ns":
                ns = np.rint(si * _NS).astype(np.int64)
                arr[r.column] = _unwrap_day(ns, t_rx) if self.time_epoch == "day" else ns
            elif r.column == "sensor_track_id":
                ok &= (si >= 0) & (si < 2**32)
                arr[r.column] = np.clip(np.rint(si), 0, 2**32 - 1).astype(np.uint32)
            elif r.column == "coasting":
                arr[r.column] = si != 0
            elif r.column == "azimuth_rad":
                arr[r.column] = np.mod(si, _TWO_PI)
            else:
                arr[r.column] = si
        ok &= arr["range_m"] >= 0
        for col in _SIGMAS:
            if col.endswith("rate_radps") and not self.rates_valid:
                continue
            ok &= arr[col] > 0
        return arr, ok

    def encode(self, row: np.void) -> dict[str, float]:
        """Physical signal values of one ``TRACK_BATCH_DTYPE`` row (the device role)."""
        out: dict[str, float] = {}
        for r in self.rules:
            if r.signal is None:
                continue
            if r.column == "sensor_time_ns":
                ns = int(row[r.column])
                si = (ns % _DAY_NS if self.time_epoch == "day" else ns) / _NS
            else:
                si = float(row[r.column])
            out[r.signal] = (si / r.si - r.offset) / r.scale
        return out


def _unwrap_day(tod_ns: npt.NDArray[np.int64], t_rx: int) -> npt.NDArray[np.int64]:
    """Time of day -> UTC ns: the day of ``t_rx``, or the one before/after when
    that is nearer (a report stamped just before midnight arriving after it)."""
    midnight = t_rx - t_rx % _DAY_NS
    t = midnight + tod_ns
    t = np.where(t - t_rx > _DAY_NS // 2, t - _DAY_NS, t)
    return np.where(t_rx - t > _DAY_NS // 2, t + _DAY_NS, t)


def compile_mapping(fields: TrackFields, units: MappingABC[str, str | None]) -> TrackMapping:
    """Check ``fields`` against the wire signals (name -> unit) and compile it.

    Raises ValueError whose message starts with the key (``fields.range.signal: ...``).
    """
    rules: list[ColumnRule] = []
    epoch: str | None = None
    for name, (column, dim) in TARGETS.items():
        src = getattr(fields, name)
        if src is None:
            continue
        key = f"fields.{name}"
        unit = src.unit
        if src.signal is not None:
            if src.signal not in units:
                known = ", ".join(sorted(units))
                raise ValueError(f"{key}.signal: no signal {src.signal!r} on the wire (known: {known})")
            unit = unit if unit is not None else units[src.signal]
        if unit is None or unit == "":
            if dim != "ratio":
                raise ValueError(f"{key}.unit: needed (the signal has no unit; this field is a {dim})")
            unit = "1"
        try:
            si = factor(unit, dim)
        except ValueError as exc:
            raise ValueError(f"{key}.unit: {exc}") from None
        if isinstance(src, TimeSource):
            epoch = src.epoch
        rules.append(ColumnRule(column, src.signal, src.value or 0.0, src.scale, src.offset, si))
    return TrackMapping(tuple(rules), epoch, fields.azimuth_rate is not None)
