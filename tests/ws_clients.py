"""Display clients for the slow-viewer test and benchmark: pages that read, and
pages that complete the WebSocket handshake and then never read again.

Used by tests/e2e/test_web_clients.py and benchmarks/bench_display_clients.py.
"""

from __future__ import annotations

import asyncio
import base64
import os
import re
import socket
import time
from dataclasses import dataclass, field

import aiohttp
import pymap3d

from hilgw.v1 import track_pb2

__all__ = ["ReadingClient", "stalled_client", "track_batch"]

_SENT_NS = re.compile(r'"sent_ns":(\d+)')


async def stalled_client(host: str, port: int, rcvbuf: int = 2048) -> socket.socket:
    """A WebSocket that is opened and then never read: a tiny receive buffer,
    the handshake answer read byte by byte up to its end and nothing after.
    The caller keeps the socket (and closes it)."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)  # before connect: sets the window
    sock.setblocking(False)
    await loop.sock_connect(sock, (host, port))
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET /ws HTTP/1.1\r\nHost: {host}:{port}\r\nOrigin: http://{host}:{port}\r\n"
        f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n"
    )
    await loop.sock_sendall(sock, request.encode())
    head = b""
    while not head.endswith(b"\r\n\r\n"):  # one byte at a time: take nothing past the header
        byte = await loop.sock_recv(sock, 1)
        if not byte:
            raise ConnectionError(f"closed during the handshake: {head!r}")
        head += byte
    if not head.startswith(b"HTTP/1.1 101"):
        sock.close()
        raise ConnectionError(head.split(b"\r\n", 1)[0].decode(errors="replace"))
    return sock


@dataclass
class ReadingClient:
    """A page that reads every snapshot and notes its delay (receipt minus the
    snapshot's ``sent_ns``, both from this host's clock)."""

    delays_s: list[float] = field(default_factory=list)
    received_at: list[float] = field(default_factory=list)  # monotonic
    closed: str | None = None

    async def run(self, session: aiohttp.ClientSession, host: str, port: int, stop: asyncio.Event) -> None:
        try:
            async with session.ws_connect(
                f"http://{host}:{port}/ws", origin=f"http://{host}:{port}", heartbeat=None
            ) as ws:
                while not stop.is_set():
                    try:
                        msg = await ws.receive(timeout=0.5)  # aiohttp's own timeout: no task per call
                    except TimeoutError:
                        continue
                    if msg.type != aiohttp.WSMsgType.TEXT:
                        self.closed = f"{msg.type.name} {msg.data!r}"
                        return
                    m = _SENT_NS.search(msg.data)
                    if m:
                        self.delays_s.append((time.time_ns() - int(m.group(1))) / 1e9)
                        self.received_at.append(time.monotonic())
        except (aiohttp.ClientError, OSError) as exc:
            self.closed = f"{type(exc).__name__}: {exc}"


def track_batch(n: int, gateway_id: str = "g") -> track_pb2.TrackBatch:
    """A TrackBatch of ``n`` confirmed tracks near 45 N 7 E (a big picture:
    a never-reading page falls behind in a few pushes)."""
    batch = track_pb2.TrackBatch(gateway_id=gateway_id, time_ns=time.time_ns(), batch_sequence=1)
    for i in range(n):
        x, y, z = pymap3d.geodetic2ecef(45.0 + i * 0.001, 7.0, 1000.0)
        t = batch.tracks.add(track_id=i + 1, status=2, quality=0.9, last_update_time_ns=batch.time_ns)
        t.state.x, t.state.y, t.state.z = x, y, z
        t.state.vx = 100.0
    return batch
