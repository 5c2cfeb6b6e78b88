"""The local hold switch's own process (issue 23, docs/cue-path.md §4).

Started by :class:`gateway.cue.local_hold.LocalHoldServer`; not a user
command. Why a process and not a thread of the gateway: a thread of the
gateway must take the gateway's GIL before it can run one line of Python,
and under a flood the event loop's thread holds that GIL; on a starved host
that thread also waits for a CPU *while holding it*, so a hold thread waited
93–352 ms however high its own priority (benchmarks/operator/RESULTS.md).
This process has its own interpreter: it accepts the client, reads
``HOLD`` and increments the latch counter in memory it shares with the
gateway (the sending path reads it before every cue), all without the
gateway's GIL or event loop. Only then does it ask the gateway (a line on a
socket pair) to journal the HOLD, and it passes the answer back.

Wire, gateway <-> this process (ASCII lines): this process writes
``PRIO <what>`` once, then ``LATCH <count> <wall ns>`` per HOLD; the
gateway answers ``<count> <answer line>``. EOF from the gateway ends it.

Imports the standard library only (fast to start, nothing that needs the
gateway's configuration).
"""

from __future__ import annotations

import contextlib
import ctypes
import mmap
import os
import select
import socket
import sys
import time

_MAX_LINE = 64
_IO_TIMEOUT_S = 2.0
_ANSWER_TIMEOUT_S = 5.0
#: SCHED_FIFO priority: above every SCHED_OTHER task, low among real-time ones
#: (kernel threads use 50+), and the process only ever blocks or does a few
#: microseconds of work per HOLD, so it cannot starve the host.
RT_PRIORITY = 10


def raise_priority() -> str:
    """SCHED_FIFO when allowed (CAP_SYS_NICE or RLIMIT_RTPRIO), else unchanged; says which."""
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(RT_PRIORITY))
    except (PermissionError, AttributeError, OSError) as exc:
        return f"SCHED_OTHER unchanged ({type(exc).__name__}: no CAP_SYS_NICE / LimitRTPRIO)"
    return f"SCHED_FIFO {RT_PRIORITY}"


def _answer(pair: socket.socket, buf: bytearray, count: int) -> str:
    """The gateway's answer for HOLD ``count`` (lines for older counts are dropped)."""
    deadline = time.monotonic() + _ANSWER_TIMEOUT_S
    while True:
        while b"\n" in buf:
            line, _, rest = bytes(buf).partition(b"\n")
            buf[:] = rest
            num, _, text = line.decode("ascii", "replace").partition(" ")
            if num == str(count):
                return text
        left = deadline - time.monotonic()
        if left <= 0:
            return f"ERR latched (no cue leaves) but not journaled after {_ANSWER_TIMEOUT_S} s"
        pair.settimeout(left)
        try:
            data = pair.recv(4096)
        except TimeoutError:
            continue
        if not data:
            raise EOFError
        buf += data


def serve(
    listener: socket.socket, pair: socket.socket, counter: ctypes.c_uint64, at: ctypes.c_uint64
) -> None:
    """Accept clients until the gateway closes ``pair``."""
    buf = bytearray()
    while True:
        ready, _, _ = select.select([listener, pair], [], [])
        if pair in ready:
            pair.settimeout(0)
            try:
                data = pair.recv(4096)
            except BlockingIOError:
                data = None
            if data == b"":
                return  # the gateway closed its end (stopped or died)
            buf += data or b""  # an answer to a HOLD that was already given up on
        if listener not in ready:
            continue
        try:
            conn, _ = listener.accept()
        except OSError:
            continue
        with conn:
            conn.settimeout(_IO_TIMEOUT_S)
            try:
                line = conn.recv(_MAX_LINE)
            except OSError:
                continue
            if line.strip().upper() != b"HOLD":
                answer = "ERR only HOLD can be asked here"
            else:
                # The latch: one store to shared memory. From here no cue leaves
                # (CueCore._allowed reads it); it only forbids, so it may come
                # before the journal.
                counter.value += 1
                at.value = time.time_ns()
                count = counter.value
                pair.sendall(f"LATCH {count} {at.value}\n".encode())
                answer = _answer(pair, buf, count)
            with contextlib.suppress(OSError):
                conn.sendall(answer.encode("ascii", "replace") + b"\n")


def main(argv: list[str]) -> int:
    """``hold_proc <listening socket fd> <socket pair fd> <shared memory fd>``."""
    lfd, pfd, mfd = (int(a) for a in argv[1:4])
    listener = socket.socket(fileno=lfd)
    listener.setblocking(True)
    pair = socket.socket(fileno=pfd)
    shm = mmap.mmap(mfd, 16)
    counter = ctypes.c_uint64.from_buffer(shm, 0)
    at = ctypes.c_uint64.from_buffer(shm, 8)
    pair.sendall(f"PRIO {raise_priority()}\n".encode())
    with contextlib.suppress(EOFError, BrokenPipeError, ConnectionResetError):
        serve(listener, pair, counter, at)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
