"""One aiohttp site on host:port (the situation display's server)."""

from __future__ import annotations

import logging

from aiohttp import web

from hilgw.errors import TransportError

__all__ = ["HttpEndpoint"]

log = logging.getLogger(__name__)


class HttpEndpoint:
    """One aiohttp site on host:port; ``port`` is the bound one (0 picks one)."""

    def __init__(self, app: web.Application, host: str, port: int, what: str) -> None:
        self.app = app
        self.host = host
        self.port = port
        self.what = what
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.host, self.port)
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise TransportError(
                f"{self.what}: cannot listen on {self.host}:{self.port}: {exc.strerror}"
            ) from None
        self._runner = runner
        addr = runner.addresses[0]
        self.port = int(addr[1])
        log.info("%s on http://%s:%d/", self.what, self.host, self.port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
