"""Sans-I/O codec of a serial radar described by a struct-like layout (issue 19).

The layout (:class:`~drivers.described.description.BinaryRadarDescription`)
becomes one numpy structured dtype with the stated byte order, so a run of
frames decodes in one ``frombuffer`` and the mapping works on columns.
Frames are delimited and checked by :mod:`drivers.framing` (COBS and
CRC-16/CCITT-FALSE); a payload of the wrong length or a ``const`` field
with another value is rejected and counted, the stream goes on.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from drivers.base import Rejected, Role
from drivers.described.description import LAYOUT_TYPES, BinaryRadarDescription
from drivers.described.mapping import TrackMapping, compile_mapping
from drivers.framing import Deframer, encode_frame
from drivers.radar import TrackReportBatch
from hilgw.errors import LocalProtocolError, RemoteProtocolError

__all__ = ["BinaryRadarCodec", "CompiledLayout", "compile_layout"]


class CompiledLayout:
    """A layout as a numpy dtype, with its consts and the checked mapping."""

    def __init__(self, desc: BinaryRadarDescription) -> None:
        order = "<" if desc.byte_order == "little" else ">"
        names, formats = [], []
        for f in desc.layout:
            names.append(f.name)
            formats.append(f"V{f.size}" if f.type == "pad" else order + LAYOUT_TYPES[f.type])
        self.dtype = np.dtype({"names": names, "formats": formats})
        self.fields = {f.name: f for f in desc.layout if f.type != "pad"}
        self.consts = {f.name: f.const for f in desc.layout if f.const is not None}
        units = {f.name: f.unit for f in desc.layout if f.type != "pad" and f.const is None}
        self.mapping: TrackMapping = compile_mapping(desc.fields, units)

    @property
    def size(self) -> int:
        return int(self.dtype.itemsize)


def compile_layout(desc: BinaryRadarDescription) -> CompiledLayout:
    """Check the description; ValueError messages start with the key."""
    return CompiledLayout(desc)


class BinaryRadarCodec:
    """One end of a layout-described serial radar link."""

    def __init__(self, role: Role, compiled: CompiledLayout, *, label: str = "binary radar") -> None:
        self.role = role
        self.compiled = compiled
        self._label = label
        self._deframer = Deframer(max(compiled.size, 1), label=label)
        self._pending: list[TrackReportBatch | Rejected] = []

    def receive_data(self, data: bytes, t_rx: int) -> None:
        """Take stream bytes received at ``t_rx`` (UTC ns); events wait in :meth:`drain`."""
        if self.role is not Role.GATEWAY:
            raise LocalProtocolError("receive_data is the gateway role's", reason="role")
        good: list[bytes] = []
        for item in self._deframer.feed(data):
            if isinstance(item, Rejected):
                self._flush(good, t_rx)
                self._pending.append(item)
            elif len(item) != self.compiled.size:
                self._flush(good, t_rx)
                self._pending.append(
                    self._reject("length", f"payload of {len(item)} bytes, layout {self.compiled.size}", item)
                )
            else:
                good.append(item)
        self._flush(good, t_rx)

    def drain(self) -> list[TrackReportBatch | Rejected]:
        """Events completed so far, in stream order."""
        out, self._pending = self._pending, []
        return out

    def _flush(self, payloads: list[bytes], t_rx: int) -> None:
        if not payloads:
            return
        c = self.compiled
        rec = np.frombuffer(b"".join(payloads), c.dtype)
        ok = np.ones(len(rec), bool)
        for name, want in c.consts.items():
            bad = rec[name] != want
            for i in np.flatnonzero(bad & ok):
                self._pending.append(
                    self._reject("const", f"field {name} = {int(rec[name][i])}, not {want}", payloads[i])
                )
            ok &= ~bad
        cols = {}
        for s in c.mapping.signals:
            f = c.fields[s]
            cols[s] = rec[s].astype(np.float64) * f.scale + f.offset
        arr, sound = c.mapping.decode(cols, len(rec), t_rx)
        for i in np.flatnonzero(ok & ~sound):
            self._pending.append(self._reject("range", f"track row out of range ({arr[i]})", payloads[i]))
        keep = ok & sound
        if keep.any():
            self._pending.append(TrackReportBatch(0, arr[keep]))
        payloads.clear()

    def encode_tracks(self, arr: npt.NDArray[np.void]) -> bytes:
        """Framed bytes of one frame per ``TRACK_BATCH_DTYPE`` row (device role)."""
        if self.role is not Role.DEVICE:
            raise LocalProtocolError("encode_tracks is the device role's", reason="role")
        c = self.compiled
        out = bytearray()
        for row in arr:
            rec = np.zeros(1, c.dtype)
            for name, want in c.consts.items():
                rec[name] = want
            for s, phys in c.mapping.encode(row).items():
                f = c.fields[s]
                raw = (phys - f.offset) / f.scale
                kind = c.dtype[s].kind
                if kind in "iu":
                    info = np.iinfo(c.dtype[s])
                    raw_i = round(raw)
                    if not info.min <= raw_i <= info.max:
                        raise LocalProtocolError(f"{s} = {phys} does not fit {c.dtype[s]}", reason="range")
                    rec[s] = raw_i
                else:
                    rec[s] = raw
            out += encode_frame(rec.tobytes())
        return bytes(out)

    def _reject(self, reason: str, what: str, raw: bytes) -> Rejected:
        return Rejected(RemoteProtocolError(f"{self._label}: {what}", reason=reason), raw[:64])
