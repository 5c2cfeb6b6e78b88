"""The protocol registry: name -> driver, the transport kinds it fits, its codec description.

A protocol is registered by name with "module:Class" of its driver (imported
lazily, as transports are in :mod:`gateway.transports`), the transport kinds
it can run on, whether it needs a ``[site]``, and, for protocols whose codec
is built from a declarative description (issue 19), "module:function" of the
loader that checks and compiles the device's ``codec`` block. All of it is
checked when the configuration is loaded (:mod:`gateway.config`), so a
serial protocol on a CAN transport is a one-line error naming the key, not a
failure at run time.

Third-party protocols register under the ``hilgw.protocols`` entry-point
group with "module:Class"; the class declares ``TRANSPORTS`` (a collection of
transport kinds), and optionally ``NEEDS_SITE`` and ``CODEC_LOADER``.
This module imports nothing of the gateway: the config layer uses it.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from hilgw.errors import ConfigError

__all__ = ["PROTOCOLS", "ProtocolSpec", "driver_class", "load_codec", "protocol_spec"]


@dataclass(frozen=True, slots=True)
class ProtocolSpec:
    """What the gateway knows of a protocol before importing its driver."""

    driver: str  # "module:Class"
    transports: frozenset[str]
    needs_site: bool = False
    #: "module:function(raw: dict, base_dir: Path | None) -> compiled codec"; None: no ``codec`` key.
    codec_loader: str | None = None


_STREAM = frozenset({"serial", "memory"})
_CAN = frozenset({"can"})

PROTOCOLS: dict[str, ProtocolSpec] = {
    "serial_radar": ProtocolSpec("gateway.devices.serial_radar:SerialRadarDriver", _STREAM, needs_site=True),
    "can_radar": ProtocolSpec(
        "gateway.devices.can_radar:CanRadarDriver", frozenset({"can"}), needs_site=True
    ),
    "asterix": ProtocolSpec("gateway.devices.asterix:AsterixDriver", frozenset({"udp"})),
    "nmea": ProtocolSpec("gateway.devices.ownship:NmeaDriver", _STREAM | {"udp"}),
    "launcher": ProtocolSpec("gateway.devices.launcher:LauncherDriver", _STREAM | {"can"}),
    "can_dbc_radar": ProtocolSpec(
        "gateway.devices.described:DbcRadarDriver",
        frozenset({"can"}),
        needs_site=True,
        codec_loader="drivers.described.loaders:load_dbc_radar",
    ),
    "binary_radar": ProtocolSpec(
        "gateway.devices.described:BinaryRadarDriver",
        _STREAM,
        needs_site=True,
        codec_loader="drivers.described.loaders:load_binary_radar",
    ),
}


def _import(target: str) -> Any:
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def protocol_spec(name: str) -> ProtocolSpec:
    """The spec of protocol ``name`` (built in, or from a ``hilgw.protocols`` entry point)."""
    spec = PROTOCOLS.get(name)
    if spec is not None:
        return spec
    for ep in entry_points(group="hilgw.protocols"):
        if ep.name == name:
            cls = _import(ep.value)
            return ProtocolSpec(
                ep.value,
                frozenset(getattr(cls, "TRANSPORTS", ())),
                bool(getattr(cls, "NEEDS_SITE", False)),
                getattr(cls, "CODEC_LOADER", None),
            )
    known = sorted({*PROTOCOLS, *(ep.name for ep in entry_points(group="hilgw.protocols"))})
    raise ConfigError("protocol", f"unknown protocol {name!r}; known: {', '.join(known)}")


def driver_class(name: str) -> Any:
    """The driver class of protocol ``name``."""
    return _import(protocol_spec(name).driver)


def load_codec(spec: ProtocolSpec, raw: Any, base_dir: Path | None) -> Any:
    """Check and compile a device's ``codec`` block (a table, or a path to a TOML file holding one).

    ValueError whose message starts with ``codec...`` names the key.
    """
    if spec.codec_loader is None:
        if raw is not None:
            raise ValueError("codec: this protocol takes no codec description")
        return None
    if raw is None:
        raise ValueError("codec: this protocol needs a codec description (a table or a TOML file)")
    from hilgw.tomlconfig import read_toml

    where = "codec"
    if isinstance(raw, str):
        path = Path(raw)
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        try:
            raw = read_toml(path)
        except ConfigError as exc:
            raise ValueError(f"codec: {exc.reason} ({path})") from None
        base_dir, where = path.parent, f"codec ({path})"
    try:
        return _import(spec.codec_loader)(raw, base_dir)
    except ValueError as exc:
        raise ValueError(f"{where}.{exc}") from None
