"""The protocol registry (gateway/protocols.py): names, transport kinds and entry points, checked at load."""

from __future__ import annotations

from importlib.metadata import EntryPoint
from typing import Any

import pytest

import gateway.protocols as protocols
from gateway.config import parse_config
from gateway.devices.base import DeviceDriver
from hilgw.errors import ConfigError


class PartnerFeedDriver(DeviceDriver):
    """A third-party protocol, as an installed package would register it."""

    TRANSPORTS = ("udp",)


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


@pytest.mark.usefixtures("partner_entry_point")
def test_an_entry_point_protocol_is_configured_and_built_by_name() -> None:
    cfg = parse_config(_device("partner_feed", UDP))
    assert cfg.devices[0].protocol == "partner_feed"
    assert protocols.driver_class("partner_feed") is PartnerFeedDriver


@pytest.mark.usefixtures("partner_entry_point")
def test_an_entry_point_protocol_on_a_kind_it_does_not_declare_is_refused_at_load() -> None:
    with pytest.raises(
        ConfigError, match=r"devices\[dev\]: transport.kind: partner_feed runs on udp, not serial"
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
