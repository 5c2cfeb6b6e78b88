"""The protocol registry (gateway/protocols.py): names, transport kinds and entry points, checked at load."""

from __future__ import annotations

from importlib.metadata import EntryPoint
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict, Field

import gateway.protocols as protocols
import gateway.sections.transports as table
import gateway.transports as transports
from gateway.config import parse_config
from gateway.devices.base import DeviceDriver
from gateway.transports.memory import MemoryStream
from hilgw.errors import ConfigError


class PartnerFeedDriver(DeviceDriver):
    """A third-party protocol, as an installed package would register it."""

    TRANSPORTS = ("udp", "loopback")


class LoopbackConfig(BaseModel):
    """A third-party transport's own config model."""

    model_config = ConfigDict(extra="forbid")
    kind: str
    name: str
    depth: int = Field(default=8, ge=1)


class LoopbackTransport(MemoryStream):
    """A third-party transport kind, as an installed package would register it."""

    CONFIG_MODEL = LoopbackConfig

    def __init__(self, config: LoopbackConfig) -> None:
        super().__init__(config.name)
        self.config = config


def _device(protocol: str, transport: dict[str, Any]) -> dict[str, Any]:
    return {
        "devices": [{"id": "dev", "protocol": protocol, "transport": transport}],
        "mqtt": {"enabled": False},
    }


UDP = {"kind": "udp", "bind_port": 0}
SERIAL = {"kind": "serial", "url": "/dev/null"}


@pytest.fixture
def partner_entry_point(monkeypatch: pytest.MonkeyPatch) -> None:
    ep = EntryPoint("partner_feed", f"{__name__}:PartnerFeedDriver", "hilgw.protocols")

    def fake(group: str) -> list[EntryPoint]:
        return [ep] if group == "hilgw.protocols" else []

    monkeypatch.setattr(protocols, "entry_points", fake)


@pytest.fixture
def loopback_entry_point(monkeypatch: pytest.MonkeyPatch) -> None:
    ep = EntryPoint("loopback", f"{__name__}:LoopbackTransport", "hilgw.transports")
    monkeypatch.setattr(table, "entry_points", lambda group: [ep] if group == "hilgw.transports" else [])


@pytest.mark.usefixtures("partner_entry_point", "loopback_entry_point")
def test_an_entry_point_transport_is_configured_validated_and_built_by_kind() -> None:
    cfg = parse_config(_device("partner_feed", {"kind": "loopback", "name": "lb", "depth": 3}))
    transport = transports.create_transport(cfg.devices[0].transport)
    assert isinstance(transport, LoopbackTransport)
    assert transport.config.depth == 3
    with pytest.raises(
        ConfigError, match=r"devices\[dev\]\.transport: depth: Input should be greater than or equal to 1"
    ):
        parse_config(_device("partner_feed", {"kind": "loopback", "name": "lb", "depth": 0}))
    with pytest.raises(
        ConfigError, match=r"devices\[dev\]\.transport: colour: Extra inputs are not permitted"
    ):
        parse_config(_device("partner_feed", {"kind": "loopback", "name": "lb", "colour": "red"}))


@pytest.mark.usefixtures("partner_entry_point")
def test_an_unregistered_transport_kind_is_refused_at_load() -> None:
    with pytest.raises(ConfigError, match=r"devices\[dev\]\.transport: kind: unknown transport 'zmq'"):
        parse_config(_device("partner_feed", {"kind": "zmq"}))


@pytest.mark.usefixtures("partner_entry_point")
def test_an_entry_point_protocol_is_configured_and_built_by_name() -> None:
    cfg = parse_config(_device("partner_feed", UDP))
    assert cfg.devices[0].protocol == "partner_feed"
    assert protocols.driver_class("partner_feed") is PartnerFeedDriver


@pytest.mark.usefixtures("partner_entry_point")
def test_an_entry_point_protocol_on_a_kind_it_does_not_declare_is_refused_at_load() -> None:
    with pytest.raises(
        ConfigError, match=r"devices\[dev\]: transport.kind: partner_feed runs on loopback, udp, not serial"
    ):
        parse_config(_device("partner_feed", SERIAL))


@pytest.mark.parametrize(
    ("protocol", "transport", "message"),
    [
        ("asterix", SERIAL, "transport.kind: asterix runs on udp, not serial"),
        ("can_radar", UDP, "transport.kind: can_radar runs on can, not udp"),
        ("serial_radar", UDP, "transport.kind: serial_radar runs on memory, serial, not udp"),
        ("radar9000", UDP, "protocol: unknown protocol 'radar9000'; known: asterix, binary_radar"),
        ("nmea", {**UDP, "kind": "udp"}, None),
    ],
)
def test_protocol_and_transport_are_checked_at_load(
    protocol: str, transport: dict[str, Any], message: str | None
) -> None:
    raw = _device(protocol, transport)
    if message is None:
        assert parse_config(raw).devices[0].protocol == protocol
        return
    with pytest.raises(ConfigError) as info:
        parse_config(raw)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_a_codec_block_is_refused_where_the_protocol_takes_none() -> None:
    raw = _device("nmea", UDP)
    raw["devices"][0]["codec"] = {"dbc": "x.dbc"}
    with pytest.raises(ConfigError, match="codec: this protocol takes no codec description"):
        parse_config(raw)


def test_every_built_in_protocol_names_an_importable_driver_with_build() -> None:
    for name in protocols.PROTOCOLS:
        cls = protocols.driver_class(name)
        assert issubclass(cls, DeviceDriver), name
        assert callable(cls.build), name
