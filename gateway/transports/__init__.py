"""Transport plug-ins: a name -> "module:Class" table, imported lazily.

Third-party transports register under the ``hilgw.transports`` entry-point
group with the same "module:Class" form. A transport class takes its config
model as the only constructor argument; a plug-in class declares that model
as ``CONFIG_MODEL`` (a pydantic model with a ``kind`` field), and a device
block's ``transport`` table of that kind is validated by it at load
(gateway/sections/transports.py, ``PluginTransportConfig``).
"""

from __future__ import annotations

from typing import Any

from gateway.sections.transports import TRANSPORTS, resolve  # the name table, on the config floor
from gateway.transports.base import DatagramTransport, StreamTransport, Transport

__all__ = ["TRANSPORTS", "DatagramTransport", "StreamTransport", "Transport", "create_transport", "resolve"]


def create_transport(config: Any) -> Transport:
    """Build the transport a device's ``transport`` block names."""
    factory = resolve(config.kind)
    # A plug-in kind gets its own config model (PluginTransportConfig.resolved).
    transport: Transport = factory(getattr(config, "resolved", config))
    return transport
