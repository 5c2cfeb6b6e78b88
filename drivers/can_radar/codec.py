"""The CAN radar codec: one sans-I/O class for both ends (docs/icd/can-radar.md).

* ``Role.GATEWAY``: :meth:`CanRadarCodec.receive_frames` takes a list of
  frames (arbitration id, data, receive time) and returns events:
  :class:`~drivers.base.Rejected` and :class:`Status` in arrival order, then
  the track reports completed by these frames as :class:`TrackReportBatch`
  (the same ``TRACK_BATCH_DTYPE`` as the serial radar, so one
  :func:`gateway.normalise.normalise_polar` serves both).
* ``Role.DEVICE`` (the radar or its emulator): :meth:`encode_reports` turns a
  ``TRACK_BATCH_DTYPE`` array into frames, :meth:`send` a :class:`Status`.

Classic CAN frames are joined by :class:`~drivers.can_radar.reassembly.Reassembler`;
completed reports (and CAN FD frames, one report each) are decoded in one
vectorised pass per call with the layouts compiled from the DBC files.
No clock is read: every time comes in with a frame.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TypeAlias

import numpy as np
import numpy.typing as npt

from drivers.base import Rejected, Role
from drivers.can_radar.icd import (
    CLASSIC_PART_OF,
    CLASSIC_PARTS,
    COUNTER_MODULUS,
    FD_STATUS,
    FD_TRACK,
    KIND_BY_ID,
    LAYOUTS,
    MEAS_TIME_MODULUS_US,
    SCALED_COLUMNS,
    STATUS,
    STATUS_TIME_MODULUS_US,
    FrameKind,
)
from drivers.can_radar.reassembly import NPARTS, Reassembler
from drivers.radar import TRACK_BATCH_DTYPE, SensorState, Status, TrackReportBatch
from hilgw.can import CanFrame, MessageLayout, SignalLayout, stack_frames
from hilgw.errors import LocalProtocolError, RemoteProtocolError

__all__ = ["CanRadarCodec", "CanRadarEvent", "unwrap_us"]

CanRadarEvent: TypeAlias = TrackReportBatch | Status | Rejected

_RAW_LIMIT = 512
_CLASSIC_KINDS = frozenset(
    {FrameKind.TRK_POS, FrameKind.TRK_VEL, FrameKind.TRK_RATE, FrameKind.TRK_ACC, FrameKind.TRK_TIME}
) | {FrameKind.STATUS}
_FD_KINDS = frozenset({FrameKind.FD_TRACK, FrameKind.FD_STATUS})
_STATES = frozenset(int(s) for s in SensorState)
_MAX_TIME_US = (2**63 - 1) // 1000
_PART_WORDS = 1  # each classic part is one 64-bit word
_CEIL_SLACK = 1e-6  # as the serial ICD: a value already on an LSB re-encodes to it


def unwrap_us(
    raw_us: npt.NDArray[np.int64], modulus: int, ref_ns: npt.NDArray[np.int64]
) -> npt.NDArray[np.int64]:
    """Full UTC µs from a time stamp taken modulo ``modulus`` (ICD §4.3).

    Picks the value congruent to ``raw_us`` nearest to the reference (the
    receive time): correct while the sensor's and the gateway's clocks differ
    by less than half the modulus (3.2 days for 2^39 µs).
    """
    ref_us = ref_ns // 1000
    k = np.floor_divide(ref_us - raw_us + modulus // 2, modulus)
    out: npt.NDArray[np.int64] = raw_us + k * modulus
    return out


class CanRadarCodec:
    """Sans-I/O codec of the CAN radar ICD (classic and FD).

    ``sensor_id`` labels decoded batches (CAN frames carry no sensor id: one
    radar per bus, or per ``id_offset``). ``fd`` picks the frame format of
    both roles (ICD §3): the device role encodes it, and the gateway role
    accepts only it. A frame whose id belongs to the other format's DBC, or
    whose FD flag disagrees with ``fd``, is dropped as ``wrong_format``; an id
    in neither DBC as ``unknown_id``: a radar never takes another device's
    frames for its own (issue 14). ``id_offset`` is added to every
    arbitration id of the DBC (ICD §3: several radars on one bus).
    ``reassembly_timeout_ns`` and ``reorder_window`` tune the classic join
    (ICD §4.4).
    """

    def __init__(
        self,
        role: Role,
        *,
        sensor_id: int = 0,
        fd: bool = False,
        id_offset: int = 0,
        reassembly_timeout_ns: int = 500_000_000,
        reorder_window: int = 3,
        max_pending: int = 4096,
    ) -> None:
        if not isinstance(role, Role):
            raise LocalProtocolError(f"role {role!r} is not a Role", field="role", value=role)
        if not 0 <= id_offset <= 0x7FF - max(LAYOUTS):
            raise LocalProtocolError(f"id_offset {id_offset} puts ids outside 11 bits", field="id_offset")
        self.role = role
        self.sensor_id = sensor_id
        self.fd = fd
        self.id_offset = id_offset
        self._label = f"can radar {sensor_id}"
        mine = _FD_KINDS if fd else _CLASSIC_KINDS
        self._kinds = {fid + id_offset: kind for fid, kind in KIND_BY_ID.items() if kind in mine}
        #: Ids of the other frame format: known, but not this radar's (``wrong_format``).
        self._other = {fid + id_offset for fid, kind in KIND_BY_ID.items() if kind not in mine}
        self._format = "CAN FD" if fd else "classic CAN"
        self._lengths = {fid + id_offset: LAYOUTS[fid].length for fid in KIND_BY_ID}
        self._join = Reassembler(
            timeout_ns=reassembly_timeout_ns,
            reorder_window=reorder_window,
            max_pending=max_pending,
            label=self._label,
        )
        self._tx_counter: dict[int, int] = {}
        self._tx_sequence = 0

    # --- gateway role -----------------------------------------------------------

    @property
    def pending(self) -> int:
        """Classic track reports waiting for parts."""
        return self._join.pending

    def receive_frame(
        self, arbitration_id: int, data: bytes, timestamp_ns: int, is_fd: bool | None = None
    ) -> list[CanRadarEvent]:
        """One frame (``is_fd`` None: in this codec's format); see :meth:`receive_frames`."""
        fd = self.fd if is_fd is None else is_fd
        return self.receive_frames([CanFrame(arbitration_id, data, fd, False, timestamp_ns)])

    def receive_frames(self, frames: Iterable[CanFrame]) -> list[CanRadarEvent]:
        """Decode frames: rejections and statuses in arrival order, then track batches."""
        if self.role is not Role.GATEWAY:
            raise LocalProtocolError("only the gateway role receives radar frames", field="role")
        join = self._join
        events: list[CanRadarEvent] = []
        fd_frames: list[bytes] = []
        fd_ts: list[int] = []
        kinds, lengths, fd = self._kinds, self._lengths, self.fd
        add = join.add
        for frame in frames:
            fid, data, ts = frame.arbitration_id, frame.data, frame.timestamp_ns
            kind = kinds.get(fid)
            if kind is None or frame.is_extended or bool(frame.is_fd) is not fd:
                events.append(self._foreign(frame))
                continue
            if len(data) != lengths[fid]:
                events.append(
                    self._reject(
                        "dlc", f"id 0x{fid:X} carries {len(data)} bytes, the DBC says {lengths[fid]}", data
                    )
                )
                continue
            if kind <= FrameKind.TRK_TIME:
                add(int(kind), data, ts)
                if join.rejected:
                    events.extend(join.rejected)
                    join.rejected.clear()
            elif kind is FrameKind.FD_TRACK:
                fd_frames.append(data)
                fd_ts.append(ts)
            else:
                events.append(self._status(kind, data, ts))
        if join.done:
            done = join.done
            join.done = []
            events.extend(self._decode_classic(done))
        if fd_frames:
            events.extend(self._decode_fd(fd_frames))
        return events

    def _foreign(self, frame: CanFrame) -> Rejected:
        """Why a frame is not this radar's: ``unknown_id`` or ``wrong_format`` (ICD §3)."""
        fid = frame.arbitration_id
        if frame.is_extended or (fid not in self._kinds and fid not in self._other):
            ext = " (29-bit)" if frame.is_extended else ""
            return self._reject("unknown_id", f"arbitration id 0x{fid:X}{ext} is not in the DBC", frame.data)
        got = "CAN FD" if frame.is_fd else "classic CAN"
        other = "classic" if self.fd else "CAN FD"
        what = f"a {got} frame" if fid in self._kinds else f"an id of the {other} DBC"
        return self._reject(
            "wrong_format", f"id 0x{fid:X} is {what}; this radar is configured for {self._format}", frame.data
        )

    def expire(self, now_ns: int) -> list[Rejected]:
        """Drop classic reports still incomplete after the time-out (call when the bus is idle)."""
        self._join.sweep(now_ns)
        out = list(self._join.rejected)
        self._join.rejected.clear()
        return out

    def close(self) -> list[Rejected]:
        """End of stream: every pending report becomes a ``incomplete`` rejection."""
        self._join.flush()
        out = list(self._join.rejected)
        self._join.rejected.clear()
        return out

    def _decode_classic(self, done: list[tuple[bytes, int]]) -> list[CanRadarEvent]:
        n = len(done)
        words = np.frombuffer(b"".join(d for d, _ in done), dtype=np.dtype("<u8")).reshape(n, NPARTS)
        ref = np.fromiter((t for _, t in done), dtype=np.int64, count=n)
        raw: dict[str, npt.NDArray[np.int64]] = {}
        sig: dict[str, SignalLayout] = {}
        for p, part in enumerate(CLASSIC_PARTS):
            cols = words[:, p : p + _PART_WORDS]
            for name, layout in part.signals.items():
                if p == 0 or CLASSIC_PART_OF.get(name) == p:
                    raw[name] = layout.extract(cols)  # type: ignore[assignment]  # classic signals < 64 bits
                    sig[name] = layout
        time_us = unwrap_us(raw["MeasTimeUs"], MEAS_TIME_MODULUS_US, ref)
        out = np.empty(n, dtype=TRACK_BATCH_DTYPE)
        out["sensor_track_id"] = raw["TrackId"]
        out["sequence"] = raw["Counter"]
        # A receive time near the ends of int64 (a replayed recording's, say)
        # can unwrap to a time ns cannot hold: the row is dropped, not wrapped.
        time_bad = (time_us < 0) | (time_us > _MAX_TIME_US)
        out["sensor_time_ns"] = np.where(time_bad, 0, time_us) * 1000
        blobs = [d for d, _ in done]
        return self._finish(out, raw, sig, blobs, time_bad)

    def _decode_fd(self, datas: list[bytes]) -> list[CanRadarEvent]:
        words = stack_frames(datas, FD_TRACK)
        raw = FD_TRACK.decode_raw(words)
        out = np.empty(len(datas), dtype=TRACK_BATCH_DTYPE)
        out["sensor_track_id"] = raw["TrackId"]
        out["sequence"] = raw["Sequence"]
        out["sensor_time_ns"] = raw["SensorTime"]
        return self._finish(out, raw, dict(FD_TRACK.signals), datas)

    def _finish(
        self,
        out: npt.NDArray[np.void],
        raw: dict[str, npt.NDArray[np.int64]],
        sig: dict[str, SignalLayout],
        blobs: list[bytes],
        time_bad: npt.NDArray[np.bool_] | None = None,
    ) -> list[CanRadarEvent]:
        """Scale to SI, check every ICD rule per row, split off the bad rows."""
        rates_valid = raw["RatesValid"] != 0
        out["rates_valid"] = rates_valid
        out["coasting"] = raw["Coasting"] != 0
        bad = np.zeros(len(out), dtype=bool) if time_bad is None else time_bad.copy()
        for name in ("SensorTime", "Quality"):
            if name in sig:
                bad |= sig[name].out_of_range(raw[name])
        for spec in SCALED_COLUMNS:
            layout, r = sig[spec.signal], raw[spec.signal]
            out[spec.column] = layout.physical(r)
            rule = layout.out_of_range(r)
            if spec.rate:
                # ICD §4.1: rates and their sigmas are 0 when RatesValid is 0;
                # when valid, a rate sigma is at least one LSB.
                if spec.mode == "ceil":
                    rule = rule | (r < 1)
                rule = np.where(rates_valid, rule, r != 0)
            bad |= rule
        if not bad.any():
            return [TrackReportBatch(self.sensor_id, out)]
        events: list[CanRadarEvent] = []
        good = ~bad
        for i in np.flatnonzero(bad).tolist():
            if time_bad is not None and time_bad[i]:
                events.append(
                    self._reject(
                        "range",
                        f"track {int(raw['TrackId'][i])} MeasTimeUs {int(raw['MeasTimeUs'][i])} unwraps "
                        "to a time outside int64 ns (ICD §4.3)",
                        blobs[i],
                    )
                )
                continue
            events.append(self._row_rejection(i, raw, sig, rates_valid, blobs[i]))
        if good.any():
            events.append(TrackReportBatch(self.sensor_id, out[good]))
        return events

    def _row_rejection(
        self,
        i: int,
        raw: dict[str, npt.NDArray[np.int64]],
        sig: dict[str, SignalLayout],
        rates_valid: npt.NDArray[np.bool_],
        blob: bytes,
    ) -> Rejected:
        """Word the first broken rule of row ``i`` (slow path, bad rows only)."""
        tid = int(raw["TrackId"][i])
        for spec in SCALED_COLUMNS:
            layout, value = sig[spec.signal], int(raw[spec.signal][i])
            if spec.rate and not rates_valid[i]:
                if value != 0:
                    return self._reject_field(tid, layout, value, "must be 0 when RatesValid is 0", blob)
                continue
            if spec.rate and spec.mode == "ceil" and value < 1:
                return self._reject_field(tid, layout, value, "must be > 0 when RatesValid is 1", blob)
            if layout.out_of_range(np.array([value]))[0]:
                return self._reject_field(tid, layout, value, self._range_text(layout), blob)
        for name in ("SensorTime", "Quality"):
            if name in sig and sig[name].out_of_range(raw[name][i : i + 1])[0]:
                value = int(raw[name][i])
                return self._reject_field(tid, sig[name], value, self._range_text(sig[name]), blob)
        raise RuntimeError(f"row {i} flagged bad but no rule fails")  # a bug, not bad input

    @staticmethod
    def _range_text(layout: SignalLayout) -> str:
        return f"outside raw [{layout.raw_min}, {layout.raw_max}] (DBC)"

    def _reject_field(self, tid: int, layout: SignalLayout, value: int, why: str, blob: bytes) -> Rejected:
        err = RemoteProtocolError(
            f"{self._label}: track {tid} {layout.name} raw {value} "
            f"({value * layout.scale + layout.offset:.9g} {layout.unit}) {why}",
            reason="range",
            field=layout.name,
            value=value,
        )
        return Rejected(err, blob[:_RAW_LIMIT])

    def _status(self, kind: FrameKind, data: bytes, ts: int) -> Status | Rejected:
        layout = STATUS if kind is FrameKind.STATUS else FD_STATUS
        words = stack_frames([data], layout)
        raw = {k: int(v[0]) for k, v in layout.decode_raw(words).items()}
        if kind is FrameKind.STATUS:
            us = unwrap_us(np.array([raw["SensorTimeUs"]]), STATUS_TIME_MODULUS_US, np.array([ts]))
            time_ns, uptime = int(us[0]) * 1000, 0  # ICD §4.2: uptime not carried on classic CAN
        else:
            time_ns, uptime = raw["SensorTime"], raw["Uptime"]
        if time_ns < 0:
            return self._reject("range", f"status sensor time {time_ns} ns is negative", data)
        if raw["State"] not in _STATES:
            # Not SensorState(raw): a wire byte outside the enum is the peer's error, not ours.
            return self._reject("range", f"status State {raw['State']} is not a SensorState (ICD §4.2)", data)
        try:
            return Status(
                sensor_time_ns=time_ns,
                state=SensorState(raw["State"]),
                time_sync_locked=bool(raw["TimeLocked"]),
                radiating=bool(raw["Radiating"]),
                track_count=raw["TrackCount"],
                uptime_s=uptime,
                fault_code=raw["FaultCode"],
                sensor_id=self.sensor_id,
            )
        except LocalProtocolError as exc:
            # The event refuses a value the peer sent (e.g. a time past int64):
            # remote garbage, handed back as a drop like any other (hilgw/errors.py).
            return self._reject("range", f"status {exc}", data)

    def _reject(self, reason: str, what: str, raw: bytes) -> Rejected:
        return Rejected(RemoteProtocolError(f"{self._label}: {what}", reason=reason), raw[:_RAW_LIMIT])

    # --- device role --------------------------------------------------------------

    def encode_reports(self, reports: npt.NDArray[np.void]) -> list[CanFrame]:
        """Frames for a ``TRACK_BATCH_DTYPE`` array (ICD §4.1 / §5.1), report by report.

        Classic: five frames per report in part order, with each track's
        rolling counter kept here. FD: one frame per report, numbered by the
        codec's sequence (the array's ``sequence`` column is ignored).
        Raises :class:`LocalProtocolError` naming the first bad row and column.
        """
        self._device_only()
        if reports.dtype != TRACK_BATCH_DTYPE:
            raise LocalProtocolError(
                f"reports dtype {reports.dtype} is not TRACK_BATCH_DTYPE", field="reports"
            )
        n = len(reports)
        if n == 0:
            return []
        if self.fd:
            return self._encode_fd(reports)
        return self._encode_classic(reports)

    def _quantise(
        self, reports: npt.NDArray[np.void], sig: dict[str, SignalLayout]
    ) -> dict[str, npt.NDArray[np.int64]]:
        cols: dict[str, npt.NDArray[np.int64]] = {}
        rates_valid = reports["rates_valid"].astype(bool)
        for spec in SCALED_COLUMNS:
            layout = sig[spec.signal]
            values = reports[spec.column].astype(np.float64)
            _fail(~np.isfinite(values), reports, spec.column, "is not finite")
            scaled = (values - layout.offset) / layout.scale
            if spec.mode == "ceil":
                rawf = np.where(values > 0, np.maximum(np.ceil(scaled - _CEIL_SLACK), 1.0), np.ceil(scaled))
            else:
                rawf = np.rint(scaled)
            lo = layout.raw_min if layout.raw_min is not None else 0
            hi = layout.raw_max if layout.raw_max is not None else layout.mask
            if spec.mode == "bam":
                hi = layout.mask + 1  # 2π is allowed and wraps to 0
            bad = (rawf < lo) | (rawf > hi)
            if spec.rate:
                _fail(
                    ~rates_valid & (values != 0), reports, spec.column, "must be 0 when rates_valid is False"
                )
                bad &= rates_valid
                rawf = np.where(rates_valid, rawf, 0.0)
            _fail(
                bad,
                reports,
                spec.column,
                f"outside [{lo * layout.scale + layout.offset:.9g}, {hi * layout.scale + layout.offset:.9g}] "
                f"{layout.unit}",
            )
            raw = rawf.astype(np.int64)
            if spec.mode == "bam":
                raw &= layout.mask
            cols[spec.signal] = raw
        cols["RatesValid"] = rates_valid.astype(np.int64)
        cols["Coasting"] = reports["coasting"].astype(np.int64)
        times = reports["sensor_time_ns"].astype(np.int64)
        _fail(times < 0, reports, "sensor_time_ns", "is negative")
        return cols

    def _encode_classic(self, reports: npt.NDArray[np.void]) -> list[CanFrame]:
        sig = {name: CLASSIC_PARTS[p].signals[name] for name, p in CLASSIC_PART_OF.items()}
        cols = self._quantise(reports, sig)
        tids = reports["sensor_track_id"].astype(np.int64)
        tid_sig = CLASSIC_PARTS[0].signals["TrackId"]
        _fail(tids > tid_sig.mask, reports, "sensor_track_id", f"exceeds {tid_sig.mask} (12-bit TrackId)")
        counters = np.empty(len(reports), dtype=np.int64)
        tx = self._tx_counter
        for i, tid in enumerate(tids.tolist()):
            c = tx.get(tid, 0)
            counters[i] = c
            tx[tid] = (c + 1) % COUNTER_MODULUS
        us = (reports["sensor_time_ns"].astype(np.int64) + 500) // 1000
        cols["MeasTimeUs"] = us % MEAS_TIME_MODULUS_US
        n = len(reports)
        per_part: list[list[bytes]] = []
        for p, part in enumerate(CLASSIC_PARTS):
            mine = {name: cols[name] for name, q in CLASSIC_PART_OF.items() if q == p}
            per_part.append(part.encode_raw({"TrackId": tids, "Counter": counters, **mine}, n))
        ids = [part.frame_id + self.id_offset for part in CLASSIC_PARTS]
        frames: list[CanFrame] = []
        for i in range(n):
            for p in range(NPARTS):
                frames.append(CanFrame(ids[p], per_part[p][i]))
        return frames

    def _encode_fd(self, reports: npt.NDArray[np.void]) -> list[CanFrame]:
        cols = self._quantise(reports, dict(FD_TRACK.signals))
        n = len(reports)
        seq = (np.arange(n, dtype=np.int64) + self._tx_sequence) % (1 << 32)
        self._tx_sequence = (self._tx_sequence + n) % (1 << 32)
        cols["TrackId"] = reports["sensor_track_id"].astype(np.int64)
        cols["Sequence"] = seq
        cols["SensorTime"] = reports["sensor_time_ns"].astype(np.int64)
        fid = FD_TRACK.frame_id + self.id_offset
        return [CanFrame(fid, d, True) for d in FD_TRACK.encode_raw(cols, n)]

    def send(self, event: Status) -> CanFrame:
        """The status/heartbeat frame (ICD §4.2 classic, §5.2 FD)."""
        self._device_only()
        if not isinstance(event, Status):
            raise LocalProtocolError(
                f"cannot send {type(event).__name__} on the CAN radar link", field="event"
            )
        common = {
            "State": int(event.state),
            "TimeLocked": int(event.time_sync_locked),
            "Radiating": int(event.radiating),
            "FaultCode": event.fault_code,
            "TrackCount": event.track_count,
        }
        layout: MessageLayout = FD_STATUS if self.fd else STATUS
        if self.fd:
            common |= {"SensorTime": event.sensor_time_ns, "Uptime": event.uptime_s}
        else:
            for name in ("FaultCode", "TrackCount"):
                top = layout.signals[name].mask
                if common[name] > top:
                    raise LocalProtocolError(
                        f"Status.{name} {common[name]} exceeds {top} on classic CAN",
                        field=name,
                        value=common[name],
                    )
            common["SensorTimeUs"] = ((event.sensor_time_ns + 500) // 1000) % STATUS_TIME_MODULUS_US
        (data,) = layout.encode_raw(common, 1)
        return CanFrame(layout.frame_id + self.id_offset, data, self.fd)

    def _device_only(self) -> None:
        if self.role is not Role.DEVICE:
            raise LocalProtocolError("only the device role encodes radar frames", field="role")


def _fail(mask: npt.NDArray[np.bool_], reports: npt.NDArray[np.void], column: str, why: str) -> None:
    if mask.any():
        row = int(np.argmax(mask))
        value = reports[column][row].item()
        raise LocalProtocolError(
            f"encode_reports: row {row} {column} = {value!r} {why}", reason="range", field=column, value=value
        )
