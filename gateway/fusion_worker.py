"""Fusion off the event loop (issue 18): the engine steps in a worker.

A step of 1000 tracks takes tens of milliseconds; on the event loop it held
every frame read behind it (p99 ingest latency ~70 ms at 10k reports/s).
Here the engine lives in a worker and the loop only hands it the reports of
one period and takes back the picture:

* ``process`` (the default): a child process owns its own engine. One
  request and one reply per step over a pipe: the reports as stacked numpy
  arrays (pickle protocol 5 with the columns out of band, :func:`send_framed`), sensors registered since
  the last step, and back the picture arrays, the serialised ``TrackBatch``
  (built in the worker too: rendering 1000 tracks to protobuf is itself
  milliseconds) and the engine's counters. The GIL of the gateway is never
  held by the step.
* ``thread``: the engine steps in a thread of the gateway. numpy releases the
  GIL only inside large kernels, so the step and the ingest path still take
  turns; measured in benchmarks/RESULTS.md and kept as an option.

One step is in flight at a time and replies come back in order, so pictures
are published in sequence. The waiting is done by one thread of the stage's
own (``Pipe.poll`` with a short timeout, so a stop or a hung worker is seen),
never by the event loop.

A worker that dies, or does not answer within ``worker_timeout_s``, raises
:class:`FusionWorkerError`: the fusion task ends (the supervisor restarts it
with a fresh worker, counted in ``hilgw_task_restarts_total``) and no picture
is published meanwhile, so the cue path sees its picture go stale and
cancels, never cues (docs/cue-path.md, ``picture_stale``).
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import multiprocessing
import multiprocessing.connection
import os
import pickle
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from typing import Any

import numpy as np

from gateway.fusion.api import ReportArrays, SensorGeometry, TrackArrays
from hilgw.errors import HilgwError

log = logging.getLogger(__name__)

__all__ = ["FusionWorkerError", "ProcessWorker", "StepReply", "StepRequest"]

#: How often a waiting thread looks up from the pipe (a stop, a dead worker).
_POLL_S = 0.05


class FusionWorkerError(HilgwError):
    """The fusion worker died, hung or failed a step (the message says which)."""


@dataclass(frozen=True, slots=True)
class StepRequest:
    """One step for the worker: reports since the last one, the picture time."""

    seq: int
    t_ns: int
    reports: ReportArrays
    #: Sensors registered since the worker's last request, in index order.
    new_sensors: tuple[SensorGeometry, ...] = ()
    #: Serialised ``hilgw.v1.Markings`` by sensor index (None: no markings),
    #: sent whenever the table changes; None: unchanged.
    markings: tuple[bytes | None, ...] | None = None


@dataclass(frozen=True, slots=True)
class StepReply:
    """The picture of one step, as arrays and as a serialised TrackBatch."""

    seq: int
    t_ns: int
    picture: TrackArrays | None
    batch: bytes
    counters: dict[str, int]
    step_s: float
    error: str = ""


def number_from(engine: Any, first_track_id: int) -> None:
    """Make ``engine`` number its new tracks from ``first_track_id`` on (issue 18/20).

    A worker restarted within one gateway run builds a fresh engine, which
    would number tracks from 1 again: the cue path names a cue's target by
    track id, so a reused id could make a new track the target of a cue meant
    for an old one. The built-in engine keeps its next id in ``next_id``; an
    engine without one cannot be told, which is an error rather than a silent
    reuse of ids.
    """
    if first_track_id <= 1:
        return
    if not isinstance(getattr(engine, "next_id", None), int):
        raise TypeError(f"{type(engine).__name__} has no next_id: cannot number tracks from {first_track_id}")
    engine.next_id = max(engine.next_id, first_track_id)


@dataclass(frozen=True, slots=True)
class _Framed:
    """Announces a message sent as raw bytes: the pickle (``head`` bytes), then its buffers (sizes)."""

    sizes: tuple[int, ...]
    head: int = 0


#: Where each out-of-band buffer starts in the receive buffer: numpy columns
#: (float64, int64) are then aligned as numpy's own allocations are.
_ALIGN = 64


def send_framed(conn: multiprocessing.connection.Connection, obj: Any) -> None:
    """Send ``obj`` pickled with its numpy columns out of band (pickle protocol 5).

    ``Connection.send`` would copy every column into one pickle first: at a
    backlog of 20,000 reports that is ~9 MB more in each process for the
    length of a step (issue 18, memory). Here the pickle and the columns go
    from their own memory to the socket in as few ``writev`` calls as the
    socket takes (each releases the GIL): ``Connection.send_bytes`` took
    two writes a buffer, and the thread that calls this had to win the GIL
    back from the event loop after every one (issue 18, latency).
    """
    buffers: list[pickle.PickleBuffer] = []
    head = pickle.dumps(obj, protocol=5, buffer_callback=buffers.append)
    views = [b.raw() for b in buffers]
    conn.send(_Framed(tuple(v.nbytes for v in views), len(head)))
    _write_all(conn.fileno(), [memoryview(head), *views])


def _write_all(fd: int, views: list[memoryview]) -> None:
    pending = [v for v in views if v.nbytes]
    while pending:
        n = os.writev(fd, pending)
        while n and n >= pending[0].nbytes:
            n -= pending.pop(0).nbytes
        if n:
            pending[0] = pending[0][n:]


def recv_framed(conn: multiprocessing.connection.Connection, framed: _Framed) -> Any:
    """The object :func:`send_framed` sent, after its :class:`_Framed` was received.

    Everything is read straight into one buffer (``readv``, the GIL released;
    no zero-filling, no intermediate copies) that the buffers are slices of,
    each 64-byte aligned. They are writable, so the engine may work in place."""
    offsets = []
    end = framed.head
    for n in framed.sizes:
        start = -(-end // _ALIGN) * _ALIGN
        offsets.append(start)
        end = start + n
    room = np.empty(end + _ALIGN, np.uint8)
    base = -room.ctypes.data % _ALIGN  # past the allocation's own misalignment
    whole = room.data[base : base + end]
    parts = [whole[: framed.head]] + [whole[o : o + n] for o, n in zip(offsets, framed.sizes, strict=True)]
    _read_all(conn.fileno(), parts)
    return pickle.loads(parts[0], buffers=parts[1:])


def _read_all(fd: int, parts: list[memoryview]) -> None:
    pending = [p for p in parts if p.nbytes]
    while pending:
        n = os.readv(fd, pending)
        if n == 0:
            raise EOFError("fusion worker pipe: closed inside a message")
        while n and n >= pending[0].nbytes:
            n -= pending.pop(0).nbytes
        if n:
            pending[0] = pending[0][n:]


def _load(target: str, params: dict[str, Any]) -> Any:
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr).from_params(params)


def _worker_main(conn: multiprocessing.connection.Connection) -> None:
    """The child: build the engine, then answer step requests until told to stop."""
    # The parent owns shutdown: a Ctrl-C on the terminal reaches the whole
    # process group, and the child must not die before the parent asks.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    path, target, params, gateway_id, epoch_ns, first_track_id = conn.recv()
    sys.path[:0] = [p for p in path if p not in sys.path]  # the parent's (an engine of its tests, say)
    from gateway.track_proto import tracks_to_proto
    from hilgw.v1 import common_pb2

    try:
        engine = _load(target, params)
        number_from(engine, first_track_id)
    except Exception as exc:  # reported to the parent, which raises it there
        conn.send(("failed", f"engine {target}: {type(exc).__name__}: {exc}"))
        return
    conn.send(("ready", ""))
    markings: list[common_pb2.Markings | None] | None = None
    while True:
        try:
            msg = conn.recv()
            if isinstance(msg, _Framed):
                msg = recv_framed(conn, msg)
        except (EOFError, OSError):
            return  # the parent is gone
        if not isinstance(msg, StepRequest):
            return  # "stop"
        try:
            for g in msg.new_sensors:
                engine.add_sensor(g)
            if msg.markings is not None:
                parse = common_pb2.Markings.FromString
                markings = [parse(m) if m is not None else None for m in msg.markings] or None
            t0 = time.monotonic()
            picture = engine.step(msg.reports, msg.t_ns)
            step_s = time.monotonic() - t0
            ids = [s.sensor_id for s in engine.sensors]
            batch = tracks_to_proto(picture, ids, gateway_id, msg.seq, msg.t_ns, markings)
            batch.epoch_ns = epoch_ns
            counters = dict(getattr(engine, "counters", {}))
            reply = StepReply(msg.seq, msg.t_ns, picture, batch.SerializeToString(), counters, step_s)
        except Exception as exc:  # the engine's bug: the parent makes it loud and restarts us
            error = f"{exc!r}\n{traceback.format_exc()}"
            conn.send(StepReply(msg.seq, msg.t_ns, None, b"", {}, 0.0, error))
            return
        send_framed(conn, reply)


class ProcessWorker:
    """A fusion engine in a child process; :meth:`step` is blocking (call it in a thread).

    The child is ``python -m gateway.fusion_worker`` joined by a socket pair,
    not a ``multiprocessing.Process``: ``spawn`` would re-run the parent's
    ``__main__`` script in the child (any script that starts a gateway), and
    ``fork`` copies a process that runs threads (their locks included).
    """

    def __init__(
        self,
        target: str,
        params: dict[str, Any],
        gateway_id: str,
        epoch_ns: int,
        timeout_s: float,
        first_track_id: int = 1,
    ) -> None:
        """``first_track_id``: the engine numbers new tracks from it (:func:`number_from`)."""
        self.timeout_s = timeout_s
        mine, theirs = socket.socketpair()
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "gateway.fusion_worker", str(theirs.fileno())],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
            )
        finally:
            theirs.close()
        self._conn = multiprocessing.connection.Connection(mine.detach())
        self._conn.send((list(sys.path), target, dict(params), gateway_id, epoch_ns, first_track_id))
        self._stop = threading.Event()
        self._busy = threading.Lock()  # the pipe is used by one thread at a time
        self.ready = False

    @property
    def pid(self) -> int:
        return self.process.pid

    def _recv(self, what: str, timeout_s: float) -> Any:
        deadline = time.monotonic() + timeout_s
        while not self._conn.poll(_POLL_S):
            if self._stop.is_set():
                raise FusionWorkerError(f"fusion worker: stopped while waiting for {what}")
            if self.process.poll() is not None:
                break  # it may still have written before it died: one last look below
            if time.monotonic() > deadline:
                raise FusionWorkerError(
                    f"fusion worker pid {self.pid}: no {what} within {timeout_s:g} s (hung)"
                )
        try:
            if self._conn.poll(0):
                msg = self._conn.recv()
                return recv_framed(self._conn, msg) if isinstance(msg, _Framed) else msg
        except (EOFError, OSError):
            pass
        code = self.process.poll()
        raise FusionWorkerError(f"fusion worker pid {self.pid} died (exit code {code}) before its {what}")

    def wait_ready(self, timeout_s: float) -> None:
        """Until the engine is built in the child (imports included)."""
        kind, detail = self._recv("start-up", timeout_s)
        if kind != "ready":
            raise FusionWorkerError(f"fusion worker failed to start: {detail}")
        self.ready = True

    def step(self, request: StepRequest) -> StepReply:
        """Send one step and wait for its picture."""
        with self._busy:
            return self._step(request)

    def _step(self, request: StepRequest) -> StepReply:
        if not self.ready:
            self.wait_ready(max(self.timeout_s, 30.0))  # the child's imports, on a loaded machine
        try:
            send_framed(self._conn, request)
        except (OSError, ValueError) as exc:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(1.0)  # a broken pipe: most likely it died; say so if it did
            code = self.process.poll()
            if code is not None:
                raise FusionWorkerError(
                    f"fusion worker pid {self.pid} died (exit code {code}) before its picture {request.seq}"
                ) from exc
            raise FusionWorkerError(f"fusion worker pid {self.pid}: sending a step: {exc}") from exc
        reply = self._recv(f"picture {request.seq}", self.timeout_s)
        if not isinstance(reply, StepReply) or reply.seq != request.seq:
            raise FusionWorkerError(
                f"fusion worker pid {self.pid}: answer out of order to step {request.seq}"
            )
        if reply.error:
            raise FusionWorkerError(f"fusion worker: engine step {request.seq} failed: {reply.error}")
        return reply

    def interrupt(self) -> None:
        """Make a thread blocked in :meth:`step` give up (thread-safe)."""
        self._stop.set()

    def close(self, grace_s: float = 2.0) -> None:
        """Ask the child to stop, then make sure it has (terminate, kill)."""
        self._stop.set()
        # A step still sending (a worker that stopped reading) holds the pipe:
        # then there is no asking, only terminating.
        if self._busy.acquire(timeout=grace_s):
            with contextlib.suppress(OSError, ValueError):
                self._conn.send("stop")
            self._busy.release()
        try:
            self.process.wait(grace_s)
        except subprocess.TimeoutExpired:
            self.process.terminate()
            try:
                self.process.wait(grace_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._conn.close()


def main() -> None:
    """``python -m gateway.fusion_worker FD``: the child end of :class:`ProcessWorker`."""
    _worker_main(multiprocessing.connection.Connection(int(sys.argv[1])))


if __name__ == "__main__":
    # Run as gateway.fusion_worker, not as __main__: the parent pickles
    # gateway.fusion_worker.StepRequest, and isinstance must know it as that.
    from gateway.fusion_worker import main as _main

    _main()
