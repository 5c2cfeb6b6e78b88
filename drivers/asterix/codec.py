"""Sans-I/O ASTERIX datagram codec (docs/icd/asterix.md).

One UDP payload holds one or more data blocks (CAT, LEN, records...;
EUROCONTROL ASTERIX Part 1 §4). The gateway role turns a datagram into events;
the device role (emulator) turns events into a datagram. No socket, no clock:
the driver passes the receive time in, which resolves the ASTERIX time of day
to a UTC date (drivers/asterix/timeofday.py).

What is rejected (one ``Rejected`` per record or block, never an exception):

* ``unknown_category``: a block of a category the codec was not configured
  for; skipped whole with its LEN.
* ``truncated``: a block whose LEN runs past the datagram (or is below 3), or
  a record whose FSPEC or items run past its block. The rest of that block
  cannot be delimited and is dropped with it; earlier records and blocks are
  kept, and later blocks are still decoded when the LEN chain allows.
* ``decode``: a record that cannot be delimited with the configured edition
  (FSPEC bit of a spare FRN, FX overflow, zero explicit length), or a time of
  day of 24 h or more. A delimited record with a bad value costs only itself.
* ``missing_item``: a record without one of its category's mandatory items
  (items.py); the following records of the block are still decoded.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import asterix.generated as gen
import numpy as np

from drivers.asterix.encode import Encoder
from drivers.asterix.events import (
    SYSTEM_TRACK_DTYPE,
    TARGET_REPORT_DTYPE,
    AsterixRecordEvent,
    ServiceMessage034,
    ServiceMessage065,
    SystemTrack062,
    SystemTrackBatch,
    TargetReport048,
    TargetReportBatch,
)
from drivers.asterix.items import (
    Cat034Reader,
    Cat048Reader,
    Cat062Reader,
    Cat065Reader,
    MissingItem,
    TodRange,
)
from drivers.asterix.layout import RecordLayout, WalkError, compile_layout, walk_record
from drivers.base import Rejected, Role
from hilgw.errors import ConfigError, LocalProtocolError, RemoteProtocolError

#: Editions used unless the configuration names others (the newest libasterix 0.36 knows).
DEFAULT_EDITIONS: dict[int, tuple[int, int]] = {34: (1, 29), 48: (1, 32), 62: (1, 21), 65: (1, 6)}
#: Rejected.raw keeps at most this many bytes of the offending record/block.
MAX_RAW = 512

_READERS: dict[int, Any] = {62: Cat062Reader, 48: Cat048Reader, 34: Cat034Reader, 65: Cat065Reader}
_ROW_EVENTS: dict[int, Any] = {62: SystemTrack062, 48: TargetReport048}

AsterixEvent = AsterixRecordEvent | SystemTrackBatch | TargetReportBatch | Rejected


def spec_for(category: int, edition: tuple[int, int]) -> Any:
    """The libasterix spec class of a category edition; ConfigError if libasterix lacks it."""
    manifest: Any = gen.manifest  # a plain dict in libasterix; typed as object there
    for spec in manifest["CATS"].get(category, []):
        if tuple(spec.cv_edition) == tuple(edition):
            return spec
    raise ConfigError(f"asterix.editions.{category}", f"edition {edition[0]}.{edition[1]} is not known")


class AsterixCodec:
    """ASTERIX CAT034/048/062/065 codec with a role (h11 style, datagram flavour).

    ``editions`` maps category -> (major, minor) edition; all four categories
    are always configured (defaults: ``DEFAULT_EDITIONS``). ASTERIX does not
    put the edition on the wire, so it is configuration, and a sender on
    another edition shows up as ``decode`` rejects (FSPEC bits of undefined
    FRNs) or ``missing_item``.
    """

    def __init__(
        self, role: Role, *, editions: Mapping[int, tuple[int, int]] | None = None, source: str = "asterix"
    ) -> None:
        self.role = role
        self.source = source
        eds = dict(DEFAULT_EDITIONS)
        for cat, ed in (editions or {}).items():
            if cat not in DEFAULT_EDITIONS:
                raise ConfigError(f"asterix.editions.{cat}", "category not supported (34, 48, 62, 65)")
            eds[cat] = ed
        self.specs = {cat: spec_for(cat, ed) for cat, ed in eds.items()}
        self.layouts: dict[int, RecordLayout] = {c: compile_layout(s) for c, s in self.specs.items()}
        self._readers = {c: _READERS[c](self.specs[c], self.layouts[c]) for c in self.specs}
        self._encoder = Encoder(self.specs) if role is Role.DEVICE else None

    # ------------------------------------------------------------------ gateway side

    def receive_datagram(self, data: bytes, t_ns: int) -> list[AsterixEvent]:
        """Decode one UDP payload into per-record events (and Rejected), in wire order."""
        out = self._decode(data, t_ns)
        for i, item in enumerate(out):
            if type(item) is tuple:
                cat, row = item
                # Batch rows mark absence with NaN / -1; the per-record events with None.
                out[i] = _ROW_EVENTS[cat](
                    *(None if (v != v or (type(v) is int and v == -1)) else v for v in row)
                )
        return out  # every tuple placeholder was replaced above

    def receive_datagram_batch(self, data: bytes, t_ns: int) -> list[AsterixEvent]:
        """Decode one UDP payload for the hot path.

        CAT062 and CAT048 records come out as one ``SystemTrackBatch`` /
        ``TargetReportBatch`` each (numpy structured rows in wire order) at the
        end of the list; service messages and Rejected keep their wire order
        before them.
        """
        out = self._decode(data, t_ns)
        rows: dict[int, list[tuple[Any, ...]]] = {62: [], 48: []}
        events: list[AsterixEvent] = []
        for item in out:
            if type(item) is tuple:
                rows[item[0]].append(item[1])
            else:
                events.append(item)
        if rows[62]:
            events.append(SystemTrackBatch(np.array(rows[62], dtype=SYSTEM_TRACK_DTYPE), t_ns))
        if rows[48]:
            events.append(TargetReportBatch(np.array(rows[48], dtype=TARGET_REPORT_DTYPE), t_ns))
        return events

    def _reject(
        self, reason: str, msg: str, cat: int, rec: int | None, item: str | None, off: int, raw: bytes
    ) -> Rejected:
        where = (
            f"CAT{cat:03d}"
            + ("" if rec is None else f" record {rec}")
            + ("" if item is None else f" item {item}")
        )
        err = RemoteProtocolError(
            f"{self.source}: {where} at byte {off}: {msg}", reason=reason, field=item, offset=off, value=cat
        )
        return Rejected(err, raw[:MAX_RAW])

    def _decode(self, data: bytes, t_ns: int) -> list[Any]:
        if self.role is not Role.GATEWAY:
            raise LocalProtocolError("receive_datagram is the gateway role's", field="role", value=self.role)
        buf = bytes(data)
        n = len(buf)
        out: list[Any] = []
        off = 0
        while off < n:
            cat = buf[off]
            if off + 3 > n:
                out.append(
                    self._reject("truncated", "data block header cut short", cat, None, "LEN", off, buf[off:])
                )
                break
            length = int.from_bytes(buf[off + 1 : off + 3], "big")
            if length < 3 or off + length > n:
                msg = f"LEN {length} with {n - off} bytes left in the datagram"
                out.append(self._reject("truncated", msg, cat, None, "LEN", off, buf[off:]))
                break
            end = off + length
            layout = self.layouts.get(cat)
            if layout is None:
                out.append(
                    self._reject(
                        "unknown_category", "category not configured", cat, None, None, off, buf[off:end]
                    )
                )
            else:
                self._decode_block(buf, off + 3, end, cat, layout, t_ns, out)
            off = end
        return out

    def _decode_block(
        self, buf: bytes, off: int, end: int, cat: int, layout: RecordLayout, t_ns: int, out: list[Any]
    ) -> None:
        reader = self._readers[cat]
        index = 0
        while off < end:
            try:
                pos, nxt = walk_record(buf, off, end, layout)
            except WalkError as e:
                # The record cannot be delimited: the rest of the block goes with it.
                out.append(self._reject(e.reason, str(e), cat, index, e.item, e.offset, buf[off:end]))
                return
            try:
                row = reader.read(buf, pos, t_ns)
            except MissingItem as e:
                out.append(
                    self._reject(
                        "missing_item", "mandatory item absent", cat, index, e.item, off, buf[off:nxt]
                    )
                )
            except TodRange as e:
                msg = f"time of day {e.value / 128} s is not below 86400 s"
                out.append(self._reject("decode", msg, cat, index, e.item, off, buf[off:nxt]))
            else:
                if cat == 34:
                    out.append(ServiceMessage034(*row))
                elif cat == 65:
                    out.append(ServiceMessage065(*row))
                else:
                    out.append((cat, row))
            off = nxt
            index += 1

    # ------------------------------------------------------------------ device side

    def send(self, events: AsterixRecordEvent | Sequence[AsterixRecordEvent]) -> bytes:
        """Encode events into one datagram.

        Consecutive events of one category share a data block, so
        ``[track, track, plot, track]`` gives three blocks. Raises
        LocalProtocolError for values the items cannot carry.
        """
        if self._encoder is None:
            raise LocalProtocolError("send is the device role's", field="role", value=self.role)
        evs = [events] if not isinstance(events, Sequence) else list(events)
        blocks: list[bytes] = []
        run_cat: int | None = None
        run: list[Any] = []
        for ev in evs:
            cat, rec = self._encoder.record(ev)
            if run and cat != run_cat:
                blocks.append(self._block(run_cat, run))
                run = []
            run_cat = cat
            run.append(rec)
        if run:
            blocks.append(self._block(run_cat, run))
        return b"".join(blocks)

    def _block(self, cat: int | None, records: list[Any]) -> bytes:
        assert cat is not None  # a run always has a category
        data: bytes = self.specs[cat].create(records).unparse().to_bytes()
        if len(data) > 0xFFFF:
            raise LocalProtocolError("data block longer than 65535 bytes (LEN is 16 bits)", value=len(data))
        return data
