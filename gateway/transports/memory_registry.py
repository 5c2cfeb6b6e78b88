"""Named in-memory stream links, so a config block ``{kind = "memory", name = "x"}``
finds the end a test holds (``memory_endpoint(name).peer``)."""

from __future__ import annotations

from gateway.sections.transports import MemoryTransportConfig
from gateway.transports.memory import MemoryStream, stream_pair

_LINKS: dict[str, tuple[MemoryStream, MemoryStream]] = {}


def link(name: str) -> tuple[MemoryStream, MemoryStream]:
    """(gateway end, device end) of the link called ``name``, made on first use."""
    if name not in _LINKS:
        _LINKS[name] = stream_pair(name)
    return _LINKS[name]


def forget(name: str) -> None:
    _LINKS.pop(name, None)


def memory_endpoint(config: MemoryTransportConfig) -> MemoryStream:
    return link(config.name)[0]
