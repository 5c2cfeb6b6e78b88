"""Frames python-can's ``udp_multicast`` socket dropped in the kernel are counted (issue 14/18).

The multi-source bench lost 21,797 CAN frames without a counted drop: the
socket's receive buffer overflowed while the reader thread waited for a CPU.
Here, in a private network namespace (tests/netns.py), a ``CanTransport`` on
a real ``udp_multicast`` bus has its socket's buffer shrunk to the kernel's
minimum and its reader held off while another bus sends 300 frames; then
every frame sent is either received or counted ``kernel_overflow``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import threading
import time
from typing import Any

import pytest

from tests.netns import emit_result, run_in_netns

pytestmark = pytest.mark.e2e

GROUP = "239.74.163.31"
SENT = 300


async def _main() -> dict[str, Any]:
    import can

    from gateway.config import CanTransportConfig
    from gateway.transports.can import CanTransport

    gate = threading.Event()

    def held_bus(**kw: Any) -> can.BusABC:
        bus = can.Bus(**kw)
        with socket.socket(fileno=os.dup(bus.fileno())) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1)  # the minimum: a few datagrams
        recv = bus.recv

        def gated(timeout: float | None = None) -> can.Message | None:
            return recv(timeout) if gate.wait(timeout) else None

        bus.recv = gated  # type: ignore[method-assign]
        return bus

    # recv_buffer_bytes 0: the shrunk buffer stays (the transport would ask for 4 MiB).
    cfg = CanTransportConfig(
        kind="can", interface="udp_multicast", channel=GROUP, fd=False, poll_s=0.02, recv_buffer_bytes=0
    )
    t = CanTransport(cfg, bus_factory=held_bus)
    got = 0
    async with t:
        with can.Bus(interface="udp_multicast", channel=GROUP, fd=False) as tx:
            for k in range(SENT):
                tx.send(
                    can.Message(
                        arbitration_id=0x100 + k % 16, data=k.to_bytes(8, "little"), is_extended_id=False
                    )
                )
        gate.set()
        deadline = time.monotonic() + 30.0  # only against a hang: without the count it never adds up
        while got + t.counters["kernel_overflow"] < SENT and time.monotonic() < deadline:
            with contextlib.suppress(TimeoutError):
                got += len(await asyncio.wait_for(t.recv_batch(), 0.2))
    return {
        "got": got,
        "kernel_overflow": t.counters["kernel_overflow"],
        "queue_full": t.counters["queue_full"],
    }


def netns_body() -> None:
    emit_result(asyncio.run(_main()))


def test_kernel_drops_of_a_udp_multicast_bus_are_counted() -> None:
    res = run_in_netns("from tests.e2e.test_can_kernel_drops_netns import netns_body; netns_body()", 60)
    assert res["kernel_overflow"] > 0, res
    assert res["got"] + res["kernel_overflow"] == SENT, res  # every frame received or counted
    assert res["queue_full"] == 0
