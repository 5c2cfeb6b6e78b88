"""The fault timeline of a scenario and the byte-level mutators that apply it.

Pure: no I/O, no clock. The emulators ask a :class:`FaultSchedule` which faults
of their device are active at scenario time ``t`` and run their output bytes
through the mutators below; what "unplug" or "dropout" means on a transport is
the emulator's business (sim_devices/emulate.py).

Mutators on a serial byte stream know the framing of the project's serial ICDs
(drivers/framing.py, docs/icd/serial-radar.md §3): ``COBS(payload || CRC-16) || 0x00``.

* :func:`garbage` — ``n`` random non-zero bytes between two delimiters: one
  junk frame the receiver rejects ("framing" if it is not valid COBS, else
  "crc" or "truncated"; "too_long" past the largest frame), without touching
  the frames around it.
* :func:`corrupt_crc` — decode a frame, flip bits of its CRC, re-encode: still
  valid COBS, so the receiver counts exactly one "crc" drop per frame.
* :func:`duplicate_frames` — send whole frames twice.
* :class:`DelayLine` — hold bytes until a release time (order kept).

Clock steps, dropouts, silent heartbeats and unplugs are answers of the
schedule (:meth:`FaultSchedule.clock_step_s`, :meth:`FaultSchedule.active_kind`).
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Iterable, Sequence

import numpy as np
from cobs import cobs

from drivers.framing import CRC_SIZE, DELIMITER
from sim_devices.scenario import Scenario
from sim_devices.scenario_faults import FaultConfig

__all__ = [
    "DatagramFaults",
    "DelayLine",
    "FaultSchedule",
    "corrupt_crc",
    "duplicate_datagrams",
    "duplicate_frames",
    "garbage",
    "split_frames",
]


class FaultSchedule:
    """The faults of one device (or all, with ``device=None``) as a function of scenario time."""

    def __init__(self, faults: Iterable[FaultConfig], device: str | None = None) -> None:
        self.faults: tuple[FaultConfig, ...] = tuple(
            f for f in faults if device is None or f.device == device
        )
        # Every start and end, sorted: where the set of active faults can change.
        self._edges = np.unique(
            np.array([e for f in self.faults for e in (f.start_s, f.end_s)], dtype=np.float64)
        )

    @classmethod
    def of(cls, scenario: Scenario, device: str) -> FaultSchedule:
        """The schedule of ``device`` in ``scenario``."""
        return cls(scenario.faults, device)

    def __bool__(self) -> bool:
        return bool(self.faults)

    def kinds(self) -> set[str]:
        """Every fault kind on the timeline."""
        return {f.kind for f in self.faults}

    def active(self, t_s: float) -> list[FaultConfig]:
        """Faults active at ``t_s`` (``start_s <= t < end_s``), in file order."""
        return [f for f in self.faults if f.start_s <= t_s < f.end_s]

    def active_kind(self, kind: str, t_s: float) -> FaultConfig | None:
        """The first active fault of ``kind`` at ``t_s``, or None."""
        for f in self.faults:
            if f.kind == kind and f.start_s <= t_s < f.end_s:
                return f
        return None

    def clock_step_s(self, t_s: float) -> float:
        """Sum of the active clock steps: what the device clock is off by at ``t_s``."""
        return sum(f.step_s or 0.0 for f in self.active(t_s) if f.kind == "clock_step")

    def delay_s(self, t_s: float) -> float:
        """The largest active delay at ``t_s`` (0 when none)."""
        return max((f.delay_s or 0.0 for f in self.active(t_s) if f.kind == "delay"), default=0.0)

    def probability(self, kind: str, t_s: float) -> float:
        """Chance a frame is hit by an active ``kind`` fault (bad_crc, duplicate): the
        complement of being missed by every one of them; 0 when none is active."""
        miss = 1.0
        for f in self.active(t_s):
            if f.kind == kind:
                miss *= 1.0 - (f.probability if f.probability is not None else 1.0)
        return 1.0 - miss

    def garbage_bytes(self, t_s: float) -> int:
        """Junk bytes to put before each write at ``t_s`` (0 when no garbage fault is active)."""
        return sum(f.garbage_bytes or 64 for f in self.active(t_s) if f.kind == "garbage")

    def next_change(self, t_s: float) -> float | None:
        """The first start or end strictly after ``t_s``, or None (nothing changes any more)."""
        i = int(np.searchsorted(self._edges, t_s, side="right"))
        return float(self._edges[i]) if i < self._edges.size else None


# --- byte mutators (serial framing of drivers/framing.py) ------------------------------


def split_frames(stream: bytes) -> list[bytes]:
    """Split whole frames off a stream, each with its 0x00 delimiter; a tail
    without delimiter is kept as the last item (it belongs to the next write)."""
    parts = stream.split(DELIMITER)
    out = [p + DELIMITER for p in parts[:-1]]
    if parts[-1]:
        out.append(parts[-1])
    return out


def garbage(n: int, rng: np.random.Generator) -> bytes:
    """``n`` random non-zero bytes framed by delimiters: exactly one junk frame on a serial line.

    The leading 0x00 makes an empty frame (skipped by the receiver, ICD §3), so
    the junk cannot merge with a frame in progress; the trailing one closes it.
    """
    junk = rng.integers(1, 256, size=n, dtype=np.uint8).tobytes()
    return DELIMITER + junk + DELIMITER


def corrupt_crc(stream: bytes, rng: np.random.Generator, probability: float = 1.0) -> tuple[bytes, int]:
    """Flip CRC bits of each whole frame with ``probability``; returns (bytes, frames corrupted).

    The frame is COBS-decoded, the last CRC byte XORed with a random non-zero
    value (so the CRC cannot match by chance) and re-encoded, so the receiver
    sees valid COBS with a wrong CRC: reason "crc" (drivers/framing.py).
    """
    out: list[bytes] = []
    hit = 0
    for frame in split_frames(stream):
        body = frame[:-1]
        if not frame.endswith(DELIMITER) or not body or rng.random() >= probability:
            out.append(frame)
            continue
        try:
            raw = bytearray(cobs.decode(body))
        except cobs.DecodeError:
            out.append(frame)  # not ours to fix: leave junk as it is
            continue
        if len(raw) <= CRC_SIZE:
            out.append(frame)
            continue
        raw[-1] ^= int(rng.integers(1, 256))
        out.append(cobs.encode(bytes(raw)) + DELIMITER)
        hit += 1
    return b"".join(out), hit


def duplicate_frames(stream: bytes, rng: np.random.Generator, probability: float = 1.0) -> tuple[bytes, int]:
    """Send each whole frame twice with ``probability``; returns (bytes, frames duplicated)."""
    out: list[bytes] = []
    hit = 0
    for frame in split_frames(stream):
        out.append(frame)
        if frame.endswith(DELIMITER) and len(frame) > 1 and rng.random() < probability:
            out.append(frame)
            hit += 1
    return b"".join(out), hit


def duplicate_datagrams(
    datagrams: Sequence[bytes], rng: np.random.Generator, probability: float
) -> list[bytes]:
    """Each datagram, and again with ``probability`` (UDP duplicates)."""
    out: list[bytes] = []
    for d in datagrams:
        out.append(d)
        if rng.random() < probability:
            out.append(d)
    return out


class DelayLine:
    """Bytes held until their release time (ns); released in push order among equal times."""

    def __init__(self) -> None:
        self._heap: list[tuple[int, int, bytes]] = []
        self._seq = itertools.count()

    def __len__(self) -> int:
        return len(self._heap)

    def push(self, release_ns: int, data: bytes) -> None:
        """Hold ``data`` until ``release_ns``."""
        heapq.heappush(self._heap, (release_ns, next(self._seq), data))

    def pop_due(self, now_ns: int) -> list[bytes]:
        """Everything due at ``now_ns``, oldest first."""
        out: list[bytes] = []
        while self._heap and self._heap[0][0] <= now_ns:
            out.append(heapq.heappop(self._heap)[2])
        return out

    def next_release_ns(self) -> int | None:
        """When the next bytes are due, or None when empty."""
        return self._heap[0][0] if self._heap else None

    def clear(self) -> int:
        """Drop everything held (the line was unplugged); returns the bytes dropped."""
        n = sum(len(d) for _, _, d in self._heap)
        self._heap.clear()
        return n


Dest = tuple[str, int]


class DatagramFaults:
    """A datagram sender seen through a device's fault timeline (UDP feeds: the frigate emulator).

    ``send(data, dest)`` is the real sender; :meth:`send` here takes the
    scenario time ``t_s`` and the wall time ``now_ns`` as well (time is passed
    in). dropout: nothing leaves; garbage (``junk=True`` destinations only): a
    junk datagram of ``garbage_bytes`` before each one; duplicate: sent twice;
    delay: held ``delay_s`` wall seconds, order kept per destination. What it
    did is in :meth:`counts`.
    """

    def __init__(
        self, send: Callable[[bytes, Dest], None], faults: FaultSchedule, rng: np.random.Generator
    ) -> None:
        self._send = send
        self.faults = faults
        self.rng = rng
        self.withheld = 0
        self.garbage = 0
        self.duplicated = 0
        self._lines: dict[Dest, DelayLine] = {}
        self._last_release: dict[Dest, int] = {}

    def counts(self) -> dict[str, int]:
        """Datagrams withheld (dropout), junk datagrams sent, datagrams duplicated."""
        return {
            "fault_datagrams_withheld": self.withheld,
            "fault_garbage_datagrams": self.garbage,
            "fault_duplicated": self.duplicated,
        }

    def send(self, data: bytes, dest: Dest, t_s: float, now_ns: int, junk: bool) -> None:
        """Send ``data`` to ``dest`` through the faults active at scenario time ``t_s``."""
        f = self.faults
        if not f:
            self._send(data, dest)
            return
        if f.active_kind("dropout", t_s):
            self.withheld += 1
            return
        out = [data]
        n = f.garbage_bytes(t_s) if junk else 0
        if n:
            out.insert(0, garbage(n, self.rng)[1:-1])  # a datagram needs no delimiters
            self.garbage += 1
        p = f.probability("duplicate", t_s)
        if p > 0:
            before = len(out)
            out = duplicate_datagrams(out, self.rng, p)
            self.duplicated += len(out) - before
        delay = f.delay_s(t_s)
        line = self._lines.setdefault(dest, DelayLine())
        for d in out:
            if delay > 0 or len(line):
                release = max(now_ns + round(delay * 1e9), self._last_release.get(dest, 0))
                self._last_release[dest] = release
                line.push(release, d)
            else:
                self._send(d, dest)

    def flush(self, now_ns: int) -> int | None:
        """Send what the delay lines release by ``now_ns``; returns the next release time, if any."""
        nxt: list[int] = []
        for dest, line in self._lines.items():
            for d in line.pop_due(now_ns):
                self._send(d, dest)
            r = line.next_release_ns()
            if r is not None:
                nxt.append(r)
        return min(nxt) if nxt else None
