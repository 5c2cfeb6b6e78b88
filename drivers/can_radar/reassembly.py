"""Joining the five classic-CAN parts of a track report (ICD §4.1, §4.4).

Every part carries the report's ``TrackId`` and its 4-bit rolling
``Counter``; a report is complete when one frame of each of the five part
ids has arrived with the same (track id, counter), in any order. The rules,
which the ICD states and the tests hold to:

* **never mixed**: parts are only ever joined under one (track id, counter)
  key, and a key is given up (counted ``incomplete``) once the track has moved
  more than ``reorder_window`` counters past it, or ``timeout_ns`` after its
  first part, so a key cannot live long enough for the counter to wrap
  around to it;
* **duplicates**: a part that repeats a part already held (or one of a
  report completed within ``timeout_ns``), byte for byte, is dropped and
  counted ``duplicate``; a *different* frame for a part already held means
  the held report lost frames and a new one reuses the key: the held one is
  dropped (``conflict``) and the new frame starts over;
* **out of order**: parts of one report may come in any order, and reports of
  one track may overtake each other by up to ``reorder_window`` counters;
  an older part is dropped and counted ``late``.

Per-frame work is a few dict operations in Python: reassembly is inherently
sequential. The decoding of the completed reports is vectorised (see
:mod:`drivers.can_radar.codec`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from drivers.base import Rejected
from drivers.can_radar.icd import COUNTER, COUNTER_MODULUS, TRACK_ID
from hilgw.errors import RemoteProtocolError

__all__ = ["NPARTS", "Reassembler"]

NPARTS = 5
_RAW_LIMIT = 512
_HALF = COUNTER_MODULUS // 2
_CBITS = COUNTER.length


@dataclass(slots=True)
class _Pending:
    parts: list[bytes | None]
    first_ns: int
    n: int = 0


@dataclass(slots=True)
class _Track:
    counter: int  # highest counter seen (mod 16 ordering, see _advance)
    last_ns: int
    pending: list[int] = field(default_factory=list)  # counters with a pending report


class Reassembler:
    """State of the classic-CAN join; ``add()`` one part, collect what completes.

    Completed reports are appended to :attr:`done` as ``(parts, timestamp_ns)``
    where ``parts`` is the five frames' data joined in part order (40 bytes),
    and ``timestamp_ns`` that of the frame that completed it. Drops are
    appended to :attr:`rejected`. The caller empties both lists.
    """

    def __init__(self, *, timeout_ns: int, reorder_window: int, max_pending: int, label: str) -> None:
        if not 0 <= reorder_window < _HALF:
            raise ValueError(f"reorder_window must be in [0, {_HALF - 1}], got {reorder_window}")
        self.timeout_ns = timeout_ns
        self.reorder_window = reorder_window
        self.max_pending = max_pending
        self.label = label
        self.done: list[tuple[bytes, int]] = []
        self.rejected: list[Rejected] = []
        self._pending: dict[int, _Pending] = {}
        self._tracks: dict[int, _Track] = {}
        # Recently completed reports, for telling duplicates from a reused key.
        self._completed: dict[int, tuple[int, tuple[bytes, ...]]] = {}
        self._last_sweep_ns = 0
        self._id_shift, self._id_mask = TRACK_ID.start, TRACK_ID.mask
        self._ctr_shift, self._ctr_mask = COUNTER.start, COUNTER.mask

    @property
    def pending(self) -> int:
        """Reports waiting for parts."""
        return len(self._pending)

    def add(self, part: int, data: bytes, ts: int) -> None:
        """Take one part (index 0..4, data already checked to be 8 bytes)."""
        head = int.from_bytes(data, "little")  # Intel byte order (ICD §2)
        tid = (head >> self._id_shift) & self._id_mask
        ctr = (head >> self._ctr_shift) & self._ctr_mask
        key = (tid << _CBITS) | ctr
        track = self._tracks.get(tid)
        if track is None:
            self._tracks[tid] = track = _Track(ctr, ts)
        else:
            track.last_ns = ts
            ahead = (ctr - track.counter) % COUNTER_MODULUS
            if ahead:
                if ahead < _HALF:
                    track.counter = ctr
                    if track.pending:
                        self._evict_behind(tid, track)
                elif COUNTER_MODULUS - ahead > self.reorder_window:
                    self._reject(
                        "late",
                        f"track {tid} counter {ctr} part {part}: {COUNTER_MODULUS - ahead} reports behind "
                        f"counter {track.counter} (reorder window {self.reorder_window})",
                        data,
                    )
                    return
        done = self._completed.get(key)
        if done is not None:
            if done[1][part] == data:
                self._reject(
                    "duplicate", f"track {tid} counter {ctr} part {part}: repeat of a completed report", data
                )
                return
            del self._completed[key]  # a new report reusing the key
        pend = self._pending.get(key)
        if pend is None:
            if len(self._pending) >= self.max_pending:
                self._evict_oldest()
            pend = self._pending[key] = _Pending([None] * NPARTS, ts)
            track.pending.append(ctr)
        else:
            held = pend.parts[part]
            if held is not None:
                if held == data:
                    self._reject("duplicate", f"track {tid} counter {ctr} part {part}: repeated frame", data)
                    return
                self._drop_pending(key, "conflict", "a different frame for a part already held")
                pend = self._pending[key] = _Pending([None] * NPARTS, ts)
                track.pending.append(ctr)
        pend.parts[part] = data
        pend.n += 1
        if pend.n == NPARTS:
            del self._pending[key]
            track.pending.remove(ctr)
            parts = tuple(p for p in pend.parts if p is not None)  # all five: n == NPARTS
            self._completed[key] = (ts, parts)
            self.done.append((b"".join(parts), ts))
        if ts - self._last_sweep_ns >= self.timeout_ns // 2:
            self.sweep(ts)

    def sweep(self, now_ns: int) -> None:
        """Give up reports older than the time-out, and forget idle tracks."""
        self._last_sweep_ns = now_ns
        limit = now_ns - self.timeout_ns
        for key in [k for k, p in self._pending.items() if p.first_ns < limit]:
            self._drop_pending(key, "incomplete", f"not complete after {self.timeout_ns / 1e9:.3f} s")
        for key in [k for k, (t, _) in self._completed.items() if t < limit]:
            del self._completed[key]
        for tid in [t for t, tr in self._tracks.items() if tr.last_ns < limit and not tr.pending]:
            del self._tracks[tid]

    def flush(self) -> None:
        """Give up every pending report (end of stream)."""
        for key in list(self._pending):
            self._drop_pending(key, "incomplete", "stream ended")

    # --- internals ---------------------------------------------------------------

    def _evict_behind(self, tid: int, track: _Track) -> None:
        for ctr in list(track.pending):
            behind = (track.counter - ctr) % COUNTER_MODULUS
            if behind > self.reorder_window:
                self._drop_pending(
                    (tid << _CBITS) | ctr, "incomplete", f"track moved on to counter {track.counter}"
                )

    def _evict_oldest(self) -> None:
        key = min(self._pending, key=lambda k: self._pending[k].first_ns)
        self._drop_pending(key, "incomplete", f"more than {self.max_pending} reports pending")

    def _drop_pending(self, key: int, reason: str, why: str) -> None:
        pend = self._pending.pop(key)
        tid, ctr = key >> _CBITS, key & (COUNTER_MODULUS - 1)
        track = self._tracks.get(tid)
        if track is not None and ctr in track.pending:
            track.pending.remove(ctr)
        have = [i for i, p in enumerate(pend.parts) if p is not None]
        raw = b"".join(p for p in pend.parts if p is not None)
        self._reject(reason, f"track {tid} counter {ctr} (parts {have} of 0..4): {why}", raw)

    def _reject(self, reason: str, what: str, raw: bytes) -> None:
        err = RemoteProtocolError(f"{self.label}: {what}", reason=reason)
        self.rejected.append(Rejected(err, raw[:_RAW_LIMIT]))
