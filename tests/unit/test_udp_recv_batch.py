"""The UDP transport drains its socket at each readiness and hands the driver
every queued datagram at once (issue 18: asyncio reads one datagram per loop
turn, and at 43k ASTERIX records/s that per-datagram cost starved the loop)."""

from __future__ import annotations

import asyncio
import socket
import sys
from pathlib import Path

import pytest

from gateway.config import UdpTransportConfig
from gateway.transports.udp import DRAIN_MAX, UdpTransport
from hilgw.errors import TransportError


async def test_datagrams_sent_together_come_as_one_batch_in_order() -> None:
    tr = UdpTransport(UdpTransportConfig(kind="udp", bind_port=0))
    await tr.open()
    try:
        n = DRAIN_MAX  # one readiness reads them all
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
            for i in range(n):  # the loop does not run meanwhile: all wait in the socket
                tx.sendto(i.to_bytes(2, "little"), tr.local_address)
        async with asyncio.timeout(5):  # bound: only against a hang
            batch = await tr.recv_batch()
        assert [int.from_bytes(d, "little") for d, _ in batch] == list(range(n))
        assert {addr[0] for _, addr in batch} == {"127.0.0.1"}
        assert tr.dropped == tr.kernel_dropped == 0
    finally:
        await tr.close()


async def test_a_batch_is_bounded_and_the_rest_stays_queued() -> None:
    tr = UdpTransport(UdpTransportConfig(kind="udp", bind_port=0))
    await tr.open()
    try:
        n = DRAIN_MAX + 10  # more than one readiness drains
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
            for i in range(n):
                tx.sendto(i.to_bytes(2, "little"), tr.local_address)
        got: list[int] = []
        async with asyncio.timeout(5):
            first = await tr.recv_batch(max_datagrams=7)
            assert len(first) == 7
            got += [int.from_bytes(d, "little") for d, _ in first]
            while len(got) < n:
                got += [int.from_bytes(d, "little") for d, _ in await tr.recv_batch()]
            got.append(int.from_bytes((await asyncio.wait_for(_next(tr, n), 5))[0], "little"))
        assert got == [*range(n), n]
    finally:
        await tr.close()


async def _next(tr: UdpTransport, i: int) -> tuple[bytes, tuple[str, int]]:
    """One more datagram, sent now, by ``recv()``."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
        tx.sendto(i.to_bytes(2, "little"), tr.local_address)
    return await tr.recv()


async def test_a_receiver_waiting_when_the_transport_closes_is_told() -> None:
    tr = UdpTransport(UdpTransportConfig(kind="udp", bind_port=0))
    await tr.open()
    waiting = asyncio.create_task(tr.recv_batch())
    await asyncio.sleep(0)
    await tr.close()
    with pytest.raises(TransportError, match="before open"):
        async with asyncio.timeout(5):
            await waiting


@pytest.mark.skipif(sys.platform != "linux", reason="SO_RCVBUF doubling and rmem_max are Linux's (socket(7))")
async def test_the_receive_buffer_the_kernel_gave_is_read_back() -> None:
    rmem_max = RMEM_MAX
    tr = UdpTransport(UdpTransportConfig(kind="udp", bind_port=0, recv_buffer_bytes=300_000))
    await tr.open()
    try:
        assert tr.recv_buffer == 2 * min(300_000, rmem_max)  # Linux reports twice the grant
    finally:
        await tr.close()


RMEM_MAX = int(Path("/proc/sys/net/core/rmem_max").read_text()) if sys.platform == "linux" else 0
