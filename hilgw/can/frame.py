"""A CAN frame as the codecs see it: plain values, no python-can type.

The gateway's CAN transport (:mod:`gateway.transports.can`) turns each
``can.Message`` into a :class:`CanFrame`; the codecs in :mod:`drivers` never
import python-can, so they are tested with nothing but bytes.
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["CLASSIC_MAX_DLC", "FD_LENGTHS", "CanFrame"]

#: Largest data field of a classic CAN 2.0 frame (ISO 11898-1).
CLASSIC_MAX_DLC = 8
#: Data lengths a CAN FD frame can have (ISO 11898-1:2015, DLC 0..15).
FD_LENGTHS = (0, 1, 2, 3, 4, 5, 6, 7, 8, 12, 16, 20, 24, 32, 48, 64)


class CanFrame(NamedTuple):
    """One CAN or CAN FD data frame.

    ``timestamp_ns`` is the receive time the transport stamped (UTC ns of the
    gateway's clock); codecs use it only where the ICD says so (time
    unwrapping, reassembly time-outs), never a clock of their own.
    """

    arbitration_id: int
    data: bytes
    is_fd: bool = False
    is_extended: bool = False
    timestamp_ns: int = 0
