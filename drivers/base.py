"""Types shared by every codec in :mod:`drivers`."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from hilgw.errors import RemoteProtocolError

#: Largest values of the little-endian wire integers the ICDs use (u16 ids and
#: counts, u32 sequences and uptimes, i64 UTC nanoseconds), checked by events.
U16_MAX = (1 << 16) - 1
U32_MAX = (1 << 32) - 1
I64_MAX = (1 << 63) - 1


class Role(enum.Enum):
    """Which end of a link a codec serves."""

    GATEWAY = "gateway"  # the hilgw side: decodes reports, sends commands/cues
    DEVICE = "device"  # the sensor/launcher side (real hardware or emulator)


class _NeedData:
    __slots__ = ()

    def __repr__(self) -> str:
        return "NEED_DATA"


#: Returned by a stream codec's ``next_event()`` when it needs more bytes.
NEED_DATA = _NeedData()


@dataclass(frozen=True, slots=True)
class Rejected:
    """A frame the peer sent was dropped; the stream goes on.

    The driver counts it under ``error.reason`` and logs ``str(error)``.
    ``raw`` is the offending frame (bounded) for recording and debugging.
    """

    error: RemoteProtocolError
    raw: bytes = b""

    @property
    def reason(self) -> str:
        return self.error.reason
