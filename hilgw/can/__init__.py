"""CAN on the shared floor: the frame the codecs see and DBC bit layouts compiled to numpy.

Used by every CAN codec in :mod:`drivers` (radar, launcher, described DBC
radars), by the gateway's CAN transport and by the emulators, so none of them
imports another's protocol package for it.
"""

from hilgw.can.frame import CLASSIC_MAX_DLC, FD_LENGTHS, CanFrame
from hilgw.can.layout import MessageLayout, SignalLayout, compile_message, load_packaged_dbc, stack_frames

__all__ = [
    "CLASSIC_MAX_DLC",
    "FD_LENGTHS",
    "CanFrame",
    "MessageLayout",
    "SignalLayout",
    "compile_message",
    "load_packaged_dbc",
    "stack_frames",
]
