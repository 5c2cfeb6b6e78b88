"""Launcher interface (docs/icd/launcher.md): DBC, events, sans-I/O codecs on CAN FD and serial.

Gateway side::

    codec = LauncherCanCodec(Role.GATEWAY, launcher_id=3, keys={1: secret})
    frames = codec.send(cue)                       # LAUNCHER_CUE + LAUNCHER_CUE_MAC
    events = codec.receive_frames(frames_in, now)  # verified Ack | LauncherStatus, or Rejected

Launcher side (emulator): the same codec with ``Role.DEVICE`` (it signs acks
and heartbeats, ICD v2), plus :class:`CueValidator` for freshness, replay and
MAC checks of cues. The serial link
(:class:`LauncherSerialCodec`) carries the same bytes in COBS/CRC frames.
Nothing here models a weapon: cues carry track state and validity only.
"""

from drivers.launcher.codec_can import LauncherCanCodec
from drivers.launcher.codec_serial import LauncherSerialCodec, SerialType
from drivers.launcher.events import (
    Ack,
    AckResult,
    Cue,
    CueCancel,
    LauncherEvent,
    LauncherState,
    LauncherStatus,
    NackReason,
    covariance_summary,
)
from drivers.launcher.replies import AUTH_REASONS, ReplySigner, ReplyVerifier
from drivers.launcher.validator import CueValidator

__all__ = [
    "AUTH_REASONS",
    "Ack",
    "AckResult",
    "Cue",
    "CueCancel",
    "CueValidator",
    "LauncherCanCodec",
    "LauncherEvent",
    "LauncherSerialCodec",
    "LauncherState",
    "LauncherStatus",
    "NackReason",
    "ReplySigner",
    "ReplyVerifier",
    "SerialType",
    "covariance_summary",
]
