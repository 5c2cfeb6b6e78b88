"""The situation display under slow and hostile clients (issue 23, item 4).

Pages that open a WebSocket and never read are dropped and counted; every
page that reads keeps getting pictures; ``/healthz`` and ``/metrics`` keep
answering; extra pages past ``web.max_clients`` get 503; a foreign Host or
Origin gets 403; every answer carries the security headers. The long form
(1,000 pages, 10 never read, 60 s) is benchmarks/bench_display_clients.py.
"""

from __future__ import annotations

import asyncio
import socket
import time

import aiohttp
import pytest

from gateway.config import GatewayConfig, parse_config
from gateway.supervisor import Gateway
from gateway.web.security import SECURITY_HEADERS
from tests.waiting import eventually
from tests.ws_clients import ReadingClient, stalled_client, track_batch

pytestmark = pytest.mark.e2e

HOST = "127.0.0.1"


def _config(**web: object) -> GatewayConfig:
    return parse_config(
        {
            "gateway_id": "display",
            "mqtt": {"enabled": False},
            "fusion": {"publish_hz": 0.01},  # its (empty) pictures would replace the test's
            "web": {"port": 0, **web},
            "metrics": {"port": 0},
        }
    )


def _sample(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " ") or (line.startswith(name + "{") and line.split(" ")[0] == name):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in /metrics")


async def test_never_reading_pages_are_dropped_and_the_others_keep_up() -> None:
    cfg = _config(update_hz=10.0, client_queue=2)
    stalled: list[socket.socket] = []
    async with Gateway(cfg) as gw, aiohttp.ClientSession() as session:
        web_port, metrics_port = gw.endpoints["web"].port, gw.endpoints["metrics"].port
        # A big picture (~60 KB a push): a page that does not read is behind in a few pushes.
        big = track_batch(300)
        gw.tracks.publish(big)
        stop = asyncio.Event()
        readers = [ReadingClient() for _ in range(47)]
        tasks = [asyncio.create_task(r.run(session, HOST, web_port, stop)) for r in readers]
        stalled = [await stalled_client(HOST, web_port) for _ in range(3)]
        health: list[int] = []

        async def tick() -> None:
            async with session.get(f"http://{HOST}:{metrics_port}/healthz") as r:
                health.append(r.status)
            gw.tracks.publish(big)
            await asyncio.sleep(0.25)

        # Until the three pages that never read are dropped (bounded, not timed:
        # at 10 Hz and a queue of 2 it takes well under a second on a quiet machine).
        deadline = time.monotonic() + 30.0
        while sum(gw.web.dropped.values()) < 3 and time.monotonic() < deadline:  # type: ignore[union-attr]
            await tick()
        counts = [len(r.received_at) for r in readers]
        # ... and every reading page still gets pictures after that.
        deadline = time.monotonic() + 15.0
        while time.monotonic() < deadline and any(
            len(r.received_at) <= n for r, n in zip(readers, counts, strict=True)
        ):
            await tick()
        stop.set()
        await asyncio.gather(*tasks)
        async with session.get(f"http://{HOST}:{metrics_port}/metrics") as r:
            metrics = await r.text()
        web_task = next(t for t in gw._tasks if t.get_name() == "web")
        assert not web_task.done(), "the display task ended"
    for s in stalled:
        s.close()

    assert set(health) == {200}, health
    dropped = _sample(metrics, 'hilgw_web_clients_dropped_total{reason="slow"}') + _sample(
        metrics, 'hilgw_web_clients_dropped_total{reason="send_timeout"}'
    )
    assert dropped == 3, metrics
    for i, (page, n) in enumerate(zip(readers, counts, strict=True)):
        assert page.closed is None, (i, page.closed)
        assert len(page.received_at) > n, (i, n)  # fed after the slow pages went


async def test_pages_past_max_clients_get_503_and_are_counted() -> None:
    async with Gateway(_config(max_clients=3)) as gw, aiohttp.ClientSession() as session:
        url = f"http://{HOST}:{gw.endpoints['web'].port}/ws"
        origin = f"http://{HOST}:{gw.endpoints['web'].port}"
        open_ws = [await session.ws_connect(url, origin=origin) for _ in range(3)]
        with pytest.raises(aiohttp.WSServerHandshakeError) as info:
            await session.ws_connect(url, origin=origin)
        assert info.value.status == 503
        assert gw.web is not None
        assert gw.web.refused["limit"] == 1
        await open_ws[0].close()
        web = gw.web
        await eventually(lambda: web.clients < 3, what="the server saw the close")
        again = await session.ws_connect(url, origin=origin)  # a slot is free again
        await again.close()
        for ws in open_ws[1:]:
            await ws.close()


async def test_host_and_origin_checked_and_headers_on_every_answer() -> None:
    async with Gateway(_config()) as gw, aiohttp.ClientSession() as session:
        port = gw.endpoints["web"].port
        base = f"http://{HOST}:{port}"
        for path in ("/", "/display.js", "/state.json", "/nowhere"):
            async with session.get(base + path) as r:
                assert r.status == (404 if path == "/nowhere" else 200), path
                for name, value in SECURITY_HEADERS.items():
                    assert r.headers.get(name) == value, (path, name)
        async with session.get(base + "/state.json", headers={"Host": f"localhost:{port}"}) as r:
            assert r.status == 200
        # DNS rebinding: a foreign name resolved to us.
        async with session.get(base + "/state.json", headers={"Host": f"evil.example:{port}"}) as r:
            assert r.status == 403
            assert r.headers.get("X-Frame-Options") == "DENY"
        async with session.get(base + "/state.json", headers={"Origin": "http://evil.example"}) as r:
            assert r.status == 403
        with pytest.raises(aiohttp.WSServerHandshakeError) as info:
            await session.ws_connect(base + "/ws", origin="http://evil.example")
        assert info.value.status == 403
        with pytest.raises(aiohttp.WSServerHandshakeError):
            await session.ws_connect(base + "/ws", origin="null")
        ws = await session.ws_connect(base + "/ws", origin=f"http://localhost:{port}")
        assert (await ws.receive_json())["gateway_id"] == "display"
        await ws.close()
        assert gw.web is not None
        assert gw.web.refused["host"] == 1
        assert gw.web.refused["origin"] == 3
