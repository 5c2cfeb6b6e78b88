"""An embedded MQTT broker (amqtt) on 127.0.0.1, for the bench default only.

Field and lab configs name an external broker (mosquitto, EMQX): an embedded
broker has no TLS or ACLs configured and dies with the gateway.
"""

from __future__ import annotations

import logging
import socket
from types import TracebackType
from typing import Any, Self

log = logging.getLogger(__name__)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


class EmbeddedBroker:
    """``async with EmbeddedBroker(port) as b:`` serves MQTT on 127.0.0.1:b.port.

    Port 0, or a port already taken, means a free ephemeral port.
    """

    def __init__(self, port: int = 1883, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = port if port and port_free(port, host) else free_port(host)
        self._broker: Any = None

    async def __aenter__(self) -> Self:
        from amqtt.broker import Broker  # imported here: only the bench needs it

        # amqtt logs every packet at INFO; keep the operator's console readable.
        for name in ("amqtt", "transitions"):
            logging.getLogger(name).setLevel(logging.WARNING)
        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}"}},
            "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
        }
        self._broker = Broker(config)
        await self._broker.start()
        log.info("embedded MQTT broker on %s:%d", self.host, self.port)
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._broker is not None:
            await self._broker.shutdown()
            self._broker = None
