"""The ``/metrics`` and ``/healthz`` endpoint on the standard library's HTTP server.

Why not aiohttp, as the situation display: importing it costs the gateway
process ~12 MB of its ~70 MB (issue 18, "RSS with 1000 live tracks <= 150
MB"), and two GET routes need none of it. ``http.server``'s threading
server (what prometheus_client's own ``start_http_server`` uses) serves them.

The handler threads never read the gateway: each request asks the event
loop to render the answer (``run_coroutine_threadsafe``), so the collectors
read counters on the loop as they always did, and a slow or silent client
holds only its own thread (``timeout``), never the loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from hilgw.errors import TransportError

__all__ = ["Answer", "LoopHttpEndpoint"]

log = logging.getLogger(__name__)

#: (status, content type, body) for a path; None: 404.
Answer = tuple[int, str, bytes]
#: How long a request waits for the loop to render before it gets a 503.
RENDER_TIMEOUT_S = 5.0
#: A client that sends nothing for this long is dropped (its thread ends).
CLIENT_TIMEOUT_S = 10.0


class LoopHttpEndpoint:
    """GET (and HEAD) on host:port answered by ``render(path)`` on the event loop;
    ``port`` is the bound one after :meth:`start` (0 picks one)."""

    def __init__(self, render: Callable[[str], Answer | None], host: str, port: int, what: str) -> None:
        self.render = render
        self.host = host
        self.port = port
        self.what = what
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        render = self.render

        async def on_loop(path: str) -> Answer | None:
            return render(path)

        class Handler(BaseHTTPRequestHandler):
            timeout = CLIENT_TIMEOUT_S
            protocol_version = "HTTP/1.1"

            def _answer(self, body_too: bool) -> None:
                path = self.path.split("?", 1)[0]
                try:
                    answer = asyncio.run_coroutine_threadsafe(on_loop(path), loop).result(RENDER_TIMEOUT_S)
                except (concurrent.futures.TimeoutError, RuntimeError):  # loop busy or closed
                    answer = (503, "text/plain; charset=utf-8", b"the gateway did not answer in time\n")
                if answer is None:
                    answer = (404, "text/plain; charset=utf-8", b"404: Not Found\n")
                status, ctype, body = answer
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if body_too:
                    self.wfile.write(body)

            def do_GET(self) -> None:
                self._answer(True)

            def do_HEAD(self) -> None:
                self._answer(False)

            def log_message(self, format: str, *args: object) -> None:
                pass  # no access log (as before)

        try:
            server = ThreadingHTTPServer((self.host, self.port), Handler)
        except OSError as exc:
            raise TransportError(
                f"{self.what}: cannot listen on {self.host}:{self.port}: {exc.strerror}"
            ) from None
        server.daemon_threads = True
        self._server = server
        self.port = int(server.server_address[1])
        self._thread = threading.Thread(target=server.serve_forever, name=f"{self.what}-http", daemon=True)
        self._thread.start()
        log.info("%s on http://%s:%d/", self.what, self.host, self.port)

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            await asyncio.to_thread(server.shutdown)  # waits for serve_forever to return
            server.server_close()
        self._thread = None
