"""CAN bus-off at the transport: python-can's virtual bus carries radar
traffic to a :class:`~gateway.transports.can.CanTransport`; an injector on the
same channel sends a SocketCAN bus-off error frame (linux/can/error.h
``CAN_ERR_BUSOFF``). Figures: time from the injection to the transport's
failure reaching the reader (the driver then restarts the device; goal
< 100 ms), the reader threads left after close (goal 0: no hung reader), and
frames flowing again on a reopened transport (recovered).

Not covered: an interface that disappears and comes back (a SocketCAN
``vcan`` deleted and re-created needs root and a network namespace; the
netns tests in tests/e2e cover multicast only).
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time

import can

from benchmarks.faults.common import Result, pct
from gateway.config import CanTransportConfig
from gateway.transports.can import CAN_ERR_BUSOFF, CanTransport
from hilgw.errors import TransportError

_chan = itertools.count()


def reader_threads() -> int:
    return sum(1 for t in threading.enumerate() if t.is_alive() and not t.name.startswith("asyncio_"))


async def run(reps: int = 20) -> Result:
    channel = f"faults-busoff-{next(_chan)}"
    cfg = CanTransportConfig(kind="can", interface="virtual", channel=channel, poll_s=0.01)
    injector = can.Bus(interface="virtual", channel=channel)
    frame = can.Message(arbitration_id=0x300, data=bytes(8), is_extended_id=False)
    off = can.Message(arbitration_id=CAN_ERR_BUSOFF, is_error_frame=True, data=bytes(8))
    base = reader_threads()
    reported: list[float] = []
    problems: list[str] = []
    recovered = 0
    try:
        for i in range(reps):
            t = CanTransport(cfg)
            await t.open()
            try:
                for _ in range(5):
                    injector.send(frame)
                got = 0
                async with asyncio.timeout(5):
                    while got < 5:
                        got += len(await t.recv_batch())
                if i > 0:
                    recovered += 1  # the reopened transport receives again
                sent = time.monotonic()
                injector.send(off)
                try:
                    async with asyncio.timeout(5):
                        while True:
                            await t.recv_batch()
                except TransportError as exc:
                    if "bus-off" in str(exc):
                        reported.append(time.monotonic() - sent)
                    else:
                        problems.append(f"rep {i}: {exc}")
                except TimeoutError:
                    problems.append(f"rep {i}: bus-off not reported in 5 s")
            finally:
                await t.close()
        await asyncio.sleep(0.2)
        leaked = reader_threads() - base
    finally:
        injector.shutdown()
    return {
        "experiment": "can_bus_off",
        "reps": reps,
        "reported_p50_ms": round(1e3 * pct(reported, 50), 1),
        "reported_max_ms": round(1e3 * max(reported, default=float("nan")), 1),
        "recovered": recovered,
        "reader_threads_left": leaked,
        "problems": problems,
        "goals": {
            "bus-off reported < 100 ms (max)": bool(reported) and max(reported) < 0.1 and not problems,
            "recovered every time": recovered == reps - 1,
            "no hung reader thread": leaked == 0,
            "interface gone/back": None,
        },
    }
