"""Transport plug-ins: a name -> "module:Class" table, imported lazily.

Third-party transports register under the ``hilgw.transports`` entry-point
group with the same "module:Class" form. A transport class takes its config
model as the only constructor argument; a plug-in class declares that model
as ``CONFIG_MODEL`` (a pydantic model with a ``kind`` field), and a device
block's ``transport`` table of that kind is validated by it at load
(gateway/sections/transports.py, ``PluginTransportConfig``).
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from typing import Any

from gateway.transports.base import DatagramTransport, StreamTransport, Transport
from hilgw.errors import ConfigError

TRANSPORTS: dict[str, str] = {
    "serial": "gateway.transports.serial:SerialTransport",
    "udp": "gateway.transports.udp:UdpTransport",
    "memory": "gateway.transports.memory_registry:memory_endpoint",
    "can": "gateway.transports.can:CanTransport",
}

__all__ = ["TRANSPORTS", "DatagramTransport", "StreamTransport", "Transport", "create_transport", "resolve"]


def resolve(kind: str) -> Any:
    """Import the class (or factory) registered for ``kind``."""
    target = TRANSPORTS.get(kind)
    if target is None:
        for ep in entry_points(group="hilgw.transports"):
            if ep.name == kind:
                target = ep.value
                break
    if target is None:
        raise ConfigError("transport.kind", f"unknown transport {kind!r}; known: {sorted(TRANSPORTS)}")
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def create_transport(config: Any) -> Transport:
    """Build the transport a device's ``transport`` block names."""
    factory = resolve(config.kind)
    # A plug-in kind gets its own config model (PluginTransportConfig.resolved).
    transport: Transport = factory(getattr(config, "resolved", config))
    return transport
