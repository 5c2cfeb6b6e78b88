"""``/metrics`` and ``/healthz`` on the standard library's HTTP server (issue 18:
aiohttp cost the gateway process ~10 MB of its RSS for two GET routes).
Answers are rendered on the event loop, never in the server's threads."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request

import pytest

from gateway.metrics_http import Answer, LoopHttpEndpoint
from hilgw.errors import TransportError


def _get(url: str, method: str = "GET") -> tuple[int, str, bytes]:
    req = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, r.headers["Content-Type"], r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read()


async def test_answers_are_rendered_on_the_loop_and_unknown_paths_are_404() -> None:
    loop_thread = threading.get_ident()
    seen: list[tuple[str, bool]] = []

    def render(path: str) -> Answer | None:
        seen.append((path, threading.get_ident() == loop_thread))
        if path == "/metrics":
            return 200, "text/plain; version=0.0.4", b"up 1\n"
        if path == "/healthz":
            return 503, "application/json", b'{"ok": false}'
        return None

    ep = LoopHttpEndpoint(render, "127.0.0.1", 0, "metrics")
    await ep.start()
    try:
        base = f"http://127.0.0.1:{ep.port}"
        assert await asyncio.to_thread(_get, base + "/metrics?x=1") == (
            200,
            "text/plain; version=0.0.4",
            b"up 1\n",
        )
        assert await asyncio.to_thread(_get, base + "/healthz") == (503, "application/json", b'{"ok": false}')
        assert (await asyncio.to_thread(_get, base + "/nope"))[0] == 404
        status, _, body = await asyncio.to_thread(_get, base + "/metrics", "HEAD")
        assert (status, body) == (200, b"")
        assert seen == [("/metrics", True), ("/healthz", True), ("/nope", True), ("/metrics", True)]
    finally:
        await ep.stop()
    with pytest.raises(ConnectionRefusedError):  # stopped: nothing listens
        socket.create_connection(("127.0.0.1", ep.port), timeout=1).close()


async def test_a_port_in_use_is_a_transport_error_naming_it() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(TransportError, match=f"metrics: cannot listen on 127.0.0.1:{port}"):
            await LoopHttpEndpoint(lambda p: None, "127.0.0.1", port, "metrics").start()


def test_a_gateway_with_metrics_and_no_display_does_not_import_aiohttp() -> None:
    code = (
        "import sys, gateway.supervisor, gateway.metrics, gateway.console\n"
        "print(sorted(m for m in ('aiohttp', 'yarl', 'multidict') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "[]"
