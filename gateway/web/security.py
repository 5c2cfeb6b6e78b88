"""Who may talk to the situation display, and the headers on every answer.

A page on any other site that an operator opens could otherwise open a
WebSocket to the display (browsers do not apply the same-origin policy to
WebSockets, RFC 6455 §10.2) or, through DNS rebinding, read ``/state.json``.
So the ``Host`` header must name this server, and an ``Origin`` header, when
the client sends one, must be this server too (docs/operations.md,
"Situation display").
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable, Iterable

from aiohttp import web
from yarl import URL

__all__ = ["SECURITY_HEADERS", "HostGuard", "add_security_headers"]

# Nothing but this origin: no CDN, no font service, no tile server; no framing.
_CSP = (
    "default-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": _CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "Cross-Origin-Resource-Policy": "same-origin",
}

_LOCAL_NAMES = ("127.0.0.1", "localhost", "[::1]")


async def add_security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare`` hook: every response, errors and the WebSocket
    handshake included, carries the same headers."""
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)


class HostGuard:
    """Host/Origin allow-list; ``refused`` counts refusals by reason."""

    def __init__(self, served_host: str, extra: Iterable[str] = ()) -> None:
        self._served = served_host
        self._extra = [h.lower() for h in extra]
        self._allowed: frozenset[str] = frozenset()
        self.refused: Counter[str] = Counter()

    def bind(self, port: int) -> None:
        """Fix the allow-list once the port is known (it may have been 0)."""
        names = {self._served.lower(), *_LOCAL_NAMES}
        allowed = {f"{n}:{port}" for n in names}
        for entry in self._extra:
            # "name" means name on the served port; "name:port" is taken as is.
            has_port = entry.rsplit(":", 1)[-1].isdigit() and not entry.endswith("]")
            allowed.add(entry if has_port else f"{entry}:{port}")
        if port == 80:
            allowed |= {n for n in names}
        self._allowed = frozenset(allowed)

    def allows_host(self, host: str | None) -> bool:
        return host is not None and host.lower() in self._allowed

    def allows_origin(self, origin: str | None) -> bool:
        if origin is None:  # not a browser (curl, a script): the Host check is what holds
            return True
        try:
            url = URL(origin)
        except ValueError:
            return False
        if url.scheme not in ("http", "https") or not url.host or url.port is None:
            return False  # includes the opaque origin "null" (sandboxed frames, file://)
        host = f"[{url.host}]" if ":" in url.host else url.host
        return f"{host}:{url.port}".lower() in self._allowed

    @web.middleware
    async def middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if not self.allows_host(request.headers.get("Host")):
            self.refused["host"] += 1
            raise web.HTTPForbidden(text="display: Host not allowed (web.allowed_hosts)\n")
        if not self.allows_origin(request.headers.get("Origin")):
            self.refused["origin"] += 1
            raise web.HTTPForbidden(text="display: Origin not allowed (web.allowed_hosts)\n")
        return await handler(request)
