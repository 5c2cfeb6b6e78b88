"""Unit names a device description may use, and their factor to SI.

A description says in which unit each decoded value is (a DBC signal's own
unit string, or the ``unit`` of a mapping entry); the codec multiplies by the
factor here to reach the SI unit of the track column it fills. Names follow
the spellings vendors put into DBC files (``deg``, ``m/s``, ``km/h``, ...).
"""

from __future__ import annotations

import math

__all__ = ["DIMENSIONS", "UNITS", "factor"]

#: unit name -> (dimension, factor to the SI unit of that dimension).
UNITS: dict[str, tuple[str, float]] = {
    "m": ("length", 1.0),
    "km": ("length", 1000.0),
    "ft": ("length", 0.3048),
    "NM": ("length", 1852.0),  # international nautical mile
    "nmi": ("length", 1852.0),
    "rad": ("angle", 1.0),
    "mrad": ("angle", 1e-3),
    "deg": ("angle", math.pi / 180.0),
    "mdeg": ("angle", math.pi / 180.0e3),
    "m/s": ("speed", 1.0),
    "km/h": ("speed", 1000.0 / 3600.0),
    "kn": ("speed", 1852.0 / 3600.0),
    "ft/s": ("speed", 0.3048),
    "rad/s": ("angular_rate", 1.0),
    "mrad/s": ("angular_rate", 1e-3),
    "deg/s": ("angular_rate", math.pi / 180.0),
    "s": ("time", 1.0),
    "ms": ("time", 1e-3),
    "us": ("time", 1e-6),
    "ns": ("time", 1e-9),
    "1": ("ratio", 1.0),
    "%": ("ratio", 0.01),
}

#: Dimensions by name, for error messages.
DIMENSIONS = frozenset(d for d, _ in UNITS.values())


def factor(unit: str, dimension: str) -> float:
    """SI factor of ``unit``; ValueError naming the unit when unknown or of another dimension."""
    entry = UNITS.get(unit)
    if entry is None:
        raise ValueError(f"unknown unit {unit!r}; known: {', '.join(sorted(UNITS))}")
    if entry[0] != dimension:
        raise ValueError(f"unit {unit!r} is a {entry[0]}, this field needs a {dimension}")
    return entry[1]
