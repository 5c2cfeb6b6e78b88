"""Sans-I/O codec of a CAN radar described by its vendor's DBC file (issue 19).

The DBC (read with cantools, the reference decoder the project already uses
for its own radar) defines the track frame's bit layout, scale, offset and
units; the description's ``fields`` say which signal is which track value
(:mod:`drivers.described.description`). Gateway role: frames in,
``TrackReportBatch`` and ``Rejected`` out. Device role (emulators): a
``TRACK_BATCH_DTYPE`` array in, one CAN frame per track out. One track per
frame, decoded with cantools one frame at a time: a described device is a
partner's radar at tens of tracks per scan, not the project's own
high-rate front-end (drivers/can_radar compiles its DBC into numpy instead).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import cantools
import numpy as np
import numpy.typing as npt

from drivers.base import Rejected, Role
from drivers.described.description import CanDbcRadarDescription
from drivers.described.mapping import TrackMapping, compile_mapping
from drivers.radar import TrackReportBatch
from hilgw.can import CanFrame
from hilgw.errors import LocalProtocolError, RemoteProtocolError

__all__ = ["CompiledDbc", "DbcRadarCodec", "compile_dbc"]

_RAW_LIMIT = 64


class CompiledDbc:
    """A description checked against its DBC: the message and the mapping."""

    def __init__(self, message: Any, mapping: TrackMapping, path: Path) -> None:
        self.message = message
        self.mapping = mapping
        self.path = path

    @property
    def frame_id(self) -> int:
        return int(self.message.frame_id)


def compile_dbc(desc: CanDbcRadarDescription, base_dir: Path | None = None) -> CompiledDbc:
    """Load the DBC and check the description against it.

    ValueError messages start with the key (``dbc: ...``, ``track_frame: ...``,
    ``fields.range.signal: ...``) for the config loader to prefix.
    """
    path = desc.dbc if desc.dbc.is_absolute() or base_dir is None else base_dir / desc.dbc
    try:
        db = cantools.database.can.Database()
        db.add_dbc_file(str(path))
    except OSError as exc:
        raise ValueError(f"dbc: cannot read {path}: {exc.strerror}") from None
    except Exception as exc:  # cantools raises its own parse errors
        raise ValueError(f"dbc: {path} is not a DBC file: {exc}") from None
    try:
        if isinstance(desc.track_frame, int):
            message = db.get_message_by_frame_id(desc.track_frame)
        else:
            message = db.get_message_by_name(desc.track_frame)
    except KeyError:
        names = ", ".join(f"{m.name} (0x{m.frame_id:X})" for m in db.messages)
        what = f"{desc.track_frame!r} is not a message of {path} (has: {names})"
        raise ValueError(f"track_frame: {what}") from None
    units = {s.name: (s.unit or None) for s in message.signals}
    mapping = compile_mapping(desc.fields, units)
    return CompiledDbc(message, mapping, path)


class DbcRadarCodec:
    """One end of a DBC-described radar link; ``id_offset`` is added to the DBC's frame id."""

    def __init__(self, role: Role, compiled: CompiledDbc, *, id_offset: int = 0) -> None:
        self.role = role
        self.compiled = compiled
        self.frame_id = compiled.frame_id + id_offset
        self._extended = bool(compiled.message.is_extended_frame)
        self._fd = bool(compiled.message.is_fd)

    def receive_frames(self, frames: Iterable[CanFrame]) -> list[TrackReportBatch | Rejected]:
        """Decode a batch of frames (gateway role); every bad frame is one ``Rejected``."""
        if self.role is not Role.GATEWAY:
            raise LocalProtocolError("receive_frames is the gateway role's", reason="role")
        out: list[TrackReportBatch | Rejected] = []
        rows: list[dict[str, float]] = []
        t_rx = 0
        msg = self.compiled.message
        for f in frames:
            t_rx = max(t_rx, f.timestamp_ns)
            if f.arbitration_id != self.frame_id or f.is_extended != self._extended:
                what = f"arbitration id 0x{f.arbitration_id:X} is not the track frame 0x{self.frame_id:X}"
                out.append(self._reject("unknown_id", what, f.data))
                continue
            try:
                decoded = msg.decode(f.data, decode_choices=False, scaling=True)
            except Exception as exc:  # cantools: wrong length, bad multiplexer, ...
                out.append(self._reject("decode", f"{msg.name}: {exc}", f.data))
                continue
            rows.append({k: float(v) for k, v in decoded.items()})
        if rows:
            cols = {s: np.array([r[s] for r in rows], np.float64) for s in self.compiled.mapping.signals}
            arr, ok = self.compiled.mapping.decode(cols, len(rows), t_rx)
            for i in np.flatnonzero(~ok):
                out.append(self._reject("range", f"{msg.name}: track row out of range ({arr[i]})", b""))
            if ok.any():
                out.append(TrackReportBatch(0, arr[ok]))
        return out

    def encode_tracks(self, arr: npt.NDArray[np.void]) -> list[CanFrame]:
        """One frame per ``TRACK_BATCH_DTYPE`` row (device role); LocalProtocolError
        naming the signal when a value does not fit the DBC's range."""
        if self.role is not Role.DEVICE:
            raise LocalProtocolError("encode_tracks is the device role's", reason="role")
        msg = self.compiled.message
        frames = []
        for row in arr:
            values: dict[str, float] = {s.name: 0.0 for s in msg.signals}
            values.update(self.compiled.mapping.encode(row))
            try:
                data = msg.encode(values, scaling=True, strict=True)
            except Exception as exc:
                raise LocalProtocolError(f"{msg.name}: {exc}", reason="range") from None
            frames.append(CanFrame(self.frame_id, bytes(data), self._fd, self._extended))
        return frames

    def _reject(self, reason: str, what: str, raw: bytes) -> Rejected:
        return Rejected(RemoteProtocolError(f"DBC radar: {what}", reason=reason), raw[:_RAW_LIMIT])
