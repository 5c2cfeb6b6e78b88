"""Sans-I/O ASTERIX datagram codec (docs/icd/asterix.md).

One UDP payload holds one or more data blocks (CAT, LEN, records...;
EUROCONTROL ASTERIX Part 1 §4). The gateway role turns a datagram into events;
the device role (emulator) turns events into a datagram. No socket, no clock:
the driver passes the receive time in, which resolves the ASTERIX time of day
to a UTC date (drivers/asterix/timeofday.py).

Fast path (the hot path's throughput, docs/icd/asterix.md "Performance"):
records are not length-prefixed, so the first record of a block is walked
(layout.walk_record); the following records that pass its layout tests
(layout.same_layout_run: FSPEC octets, FX bits, repetition factors, explicit
lengths) are sliced at its stride, at least ``MIN_RUN`` of them, and CAT048
runs are read as one strided numpy view (items.Cat048Reader.read_run). The
first record that fails a test is walked and starts the next run. The events,
rejects included, are those of walking every record (``fast_path=False``).

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
import numpy.typing as npt

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
from drivers.asterix.layout import RecordLayout, WalkError, compile_layout, same_layout_run, walk_record
from drivers.asterix.timeofday import TOD_RAW_LIMIT
from drivers.base import Rejected, Role
from hilgw.errors import ConfigError, LocalProtocolError, RemoteProtocolError

#: Editions used unless the configuration names others (the newest libasterix 0.36 knows).
DEFAULT_EDITIONS: dict[int, tuple[int, int]] = {34: (1, 29), 48: (1, 32), 62: (1, 21), 65: (1, 6)}
#: Rejected.raw keeps at most this many bytes of the offending record/block.
MAX_RAW = 512
#: Shortest run of same-layout records decoded as one strided slice (below it, walking is cheaper).
MIN_RUN = 4

_READERS: dict[int, Any] = {62: Cat062Reader, 48: Cat048Reader, 34: Cat034Reader, 65: Cat065Reader}
_ROW_EVENTS: dict[int, Any] = {62: SystemTrack062, 48: TargetReport048}


class _Run:
    """Internal: the batch rows of a run of same-layout records, in wire order."""

    __slots__ = ("cat", "rows")

    def __init__(self, cat: int, rows: npt.NDArray[np.void]) -> None:
        self.cat = cat
        self.rows = rows


AsterixEvent = AsterixRecordEvent | SystemTrackBatch | TargetReportBatch | Rejected


def _row_event(cat: int, row: tuple[Any, ...]) -> AsterixRecordEvent:
    # Batch rows mark absence with NaN / -1; the per-record events with None.
    return _ROW_EVENTS[cat](*(None if (v != v or (type(v) is int and v == -1)) else v for v in row))  # type: ignore[no-any-return]  # table of event classes


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

    ``fast_path`` (default on) decodes runs of same-layout records of a data
    block as one strided numpy slice instead of walking each record; the
    events are the same either way (tests/unit/test_asterix_codec.py checks
    it); off only to compare against the walker.
    """

    def __init__(
        self,
        role: Role,
        *,
        editions: Mapping[int, tuple[int, int]] | None = None,
        source: str = "asterix",
        fast_path: bool = True,
    ) -> None:
        self.role = role
        self.fast_path = fast_path
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
        out: list[Any] = []
        for item in self._decode(data, t_ns):
            if type(item) is tuple:
                out.append(_row_event(*item))
            elif type(item) is _Run:
                out.extend(_row_event(item.cat, row) for row in item.rows.tolist())
            else:
                out.append(item)
        return out

    def receive_datagram_batch(self, data: bytes, t_ns: int) -> list[AsterixEvent]:
        """Decode one UDP payload for the hot path.

        CAT062 and CAT048 records come out as one ``SystemTrackBatch`` /
        ``TargetReportBatch`` each (numpy structured rows in wire order) at the
        end of the list; service messages and Rejected keep their wire order
        before them.
        """
        dtypes = {62: SYSTEM_TRACK_DTYPE, 48: TARGET_REPORT_DTYPE}
        pieces: dict[int, list[npt.NDArray[np.void]]] = {62: [], 48: []}
        rows: dict[int, list[tuple[Any, ...]]] = {62: [], 48: []}
        events: list[AsterixEvent] = []
        for item in self._decode(data, t_ns):
            if type(item) is tuple:
                rows[item[0]].append(item[1])
            elif type(item) is _Run:
                pending = rows[item.cat]
                if pending:  # walked rows before this run keep their place
                    pieces[item.cat].append(np.array(pending, dtype=dtypes[item.cat]))
                    pending.clear()
                pieces[item.cat].append(item.rows)
            else:
                events.append(item)
        batches: dict[int, npt.NDArray[np.void]] = {}
        for cat in (62, 48):
            if rows[cat]:
                pieces[cat].append(np.array(rows[cat], dtype=dtypes[cat]))
            if len(pieces[cat]) == 1:
                batches[cat] = pieces[cat][0]
            elif pieces[cat]:
                batches[cat] = np.concatenate(pieces[cat])
        if 62 in batches:
            events.append(SystemTrackBatch(batches[62], t_ns))
        if 48 in batches:
            events.append(TargetReportBatch(batches[48], t_ns))
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
            length = nxt - off
            if self.fast_path and end - off >= MIN_RUN * length:
                run = same_layout_run(buf, off, end, length, pos, layout)
                if run >= MIN_RUN:
                    self._decode_run(buf, off, length, run, pos, cat, index, t_ns, out)
                    off += run * length
                    index += run
                    continue
            self._read_one(reader, buf, pos, off, nxt, cat, index, t_ns, out)
            off = nxt
            index += 1

    def _read_one(
        self,
        reader: Any,
        buf: bytes,
        pos: dict[int, int],
        off: int,
        nxt: int,
        cat: int,
        index: int,
        t_ns: int,
        out: list[Any],
    ) -> None:
        try:
            row = reader.read(buf, pos, t_ns)
        except MissingItem as e:
            out.append(
                self._reject("missing_item", "mandatory item absent", cat, index, e.item, off, buf[off:nxt])
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

    def _decode_run(
        self,
        buf: bytes,
        off: int,
        length: int,
        count: int,
        pos: dict[int, int],
        cat: int,
        index: int,
        t_ns: int,
        out: list[Any],
    ) -> None:
        """Decode ``count`` same-layout records; the same events as walking them one by one."""
        reader = self._readers[cat]
        read_run = getattr(reader, "read_run", None)
        if read_run is not None:
            rel = {frn: p - off for frn, p in pos.items()}
            try:
                rows, tod = read_run(buf, off, length, count, rel, t_ns)
            except MissingItem:
                pass  # per record below: each gets its own Rejected
            else:
                # Rows around a bad time of day keep their wire order with its Rejected.
                start = 0
                for i in np.flatnonzero(tod >= TOD_RAW_LIMIT).tolist():
                    if i > start:
                        out.append(_Run(cat, rows[start:i]))
                    o = off + i * length
                    msg = f"time of day {int(tod[i]) / 128} s is not below 86400 s"
                    out.append(
                        self._reject("decode", msg, cat, index + i, reader.TOD_ITEM, o, buf[o : o + length])
                    )
                    start = i + 1
                if start == 0:
                    out.append(_Run(cat, rows))
                elif start < count:
                    out.append(_Run(cat, rows[start:]))
                return
        # No vectorised reader: read each record at its stride-shifted item offsets (no walk).
        for i in range(count):
            d = i * length
            o = off + d
            shifted = {frn: p + d for frn, p in pos.items()}
            self._read_one(reader, buf, shifted, o, o + length, cat, index + i, t_ns, out)

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
