"""Device drivers: thin asyncio loops that own a transport and feed a codec.

A protocol name maps to "module:Class" (lazily imported), as transports do.
"""

from __future__ import annotations

import importlib
from typing import Any

from hilgw.errors import ConfigError

DRIVERS: dict[str, str] = {
    "serial_radar": "gateway.devices.serial_radar:SerialRadarDriver",
    "asterix": "gateway.devices.asterix:AsterixDriver",
    "nmea": "gateway.devices.ownship:NmeaDriver",
    "can_radar": "gateway.devices.can_radar:CanRadarDriver",
    "launcher": "gateway.devices.launcher:LauncherDriver",
}


def driver_class(protocol: str) -> Any:
    target = DRIVERS.get(protocol)
    if target is None:
        raise ConfigError(
            "devices.protocol", f"no driver for protocol {protocol!r}; known: {sorted(DRIVERS)}"
        )
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)
