"""Codecs built from a declarative description of a radar's wire format (issue 19).

A partner's radar is integrated with a configuration block, not with code:

* ``can_dbc_radar``: the vendor's DBC file and a signal -> track-field
  mapping (:class:`DbcRadarCodec`);
* ``binary_radar``: a struct-like field list with byte order and framing
  (:class:`BinaryRadarCodec`).

Both are sans-I/O with a gateway and a device role, so the emulator of a
described radar is driven by the very description the gateway decodes with.
"""

from drivers.described.binary_codec import BinaryRadarCodec, CompiledLayout, compile_layout
from drivers.described.dbc_codec import CompiledDbc, DbcRadarCodec, compile_dbc
from drivers.described.description import BinaryRadarDescription, CanDbcRadarDescription

__all__ = [
    "BinaryRadarCodec",
    "BinaryRadarDescription",
    "CanDbcRadarDescription",
    "CompiledDbc",
    "CompiledLayout",
    "DbcRadarCodec",
    "compile_dbc",
    "compile_layout",
]
