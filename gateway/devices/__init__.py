"""Device drivers: thin asyncio loops that own a transport and feed a codec.

A protocol name maps to "module:Class" (lazily imported), as transports do;
the table, with the transport kinds each protocol fits, is
:data:`gateway.protocols.PROTOCOLS`.
"""

from __future__ import annotations

from gateway.protocols import PROTOCOLS, driver_class

__all__ = ["PROTOCOLS", "driver_class"]
