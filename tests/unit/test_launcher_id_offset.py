"""A launcher's ``can_id_offset`` must keep every DBC id within 11 bits:
refused at config load (naming the key) and by the codec itself."""

from __future__ import annotations

import pytest

from drivers.base import Role
from drivers.launcher import LauncherCanCodec
from drivers.launcher.codec_can import MAX_ID_OFFSET
from gateway.config import parse_config
from hilgw.errors import ConfigError, LocalProtocolError


def launcher(offset: int, kind: str = "can") -> dict[str, object]:
    transport: dict[str, object] = (
        {"kind": "can", "interface": "virtual", "channel": "x", "fd": True}
        if kind == "can"
        else {"kind": "serial", "url": "/dev/null"}
    )
    return {
        "devices": [{"id": "L1", "protocol": "launcher", "can_id_offset": offset, "transport": transport}]
    }


def test_the_limit_is_the_highest_dbc_id() -> None:
    codec = LauncherCanCodec(Role.GATEWAY, launcher_id=1, id_offset=MAX_ID_OFFSET)
    assert max(codec.frame_ids) == 0x7FF


def test_config_refuses_an_offset_past_11_bits() -> None:
    assert parse_config(launcher(MAX_ID_OFFSET)).devices[0].can_id_offset == MAX_ID_OFFSET
    with pytest.raises(
        ConfigError, match=rf"devices\[L1\].*can_id_offset {MAX_ID_OFFSET + 1}.*at most {MAX_ID_OFFSET}"
    ):
        parse_config(launcher(MAX_ID_OFFSET + 1))
    # On a serial line the offset means nothing and is not checked.
    assert (
        parse_config(launcher(MAX_ID_OFFSET + 1, kind="serial")).devices[0].can_id_offset == MAX_ID_OFFSET + 1
    )


def test_codec_refuses_it_too() -> None:
    with pytest.raises(LocalProtocolError, match="outside 11 bits"):
        LauncherCanCodec(Role.DEVICE, launcher_id=1, id_offset=MAX_ID_OFFSET + 1)
    with pytest.raises(LocalProtocolError):
        LauncherCanCodec(Role.DEVICE, launcher_id=1, id_offset=-1)


def can_device(dev_id: str, protocol: str, offset: int, channel: str = "can0") -> dict[str, object]:
    dev: dict[str, object] = {
        "id": dev_id,
        "protocol": protocol,
        "can_id_offset": offset,
        "transport": {"kind": "can", "interface": "socketcan", "channel": channel, "fd": True},
    }
    if protocol == "can_radar":
        dev["site"] = {"lat_deg": 54.0, "lon_deg": 10.0, "alt_m": 0.0}
    return dev


def test_devices_on_one_bus_must_not_share_an_arbitration_id() -> None:
    # Two radars on one bus at the same offset would decode each other's frames.
    with pytest.raises(ConfigError, match=r"devices 'r1' and 'r2' share a CAN bus and arbitration id 0x300"):
        parse_config({"devices": [can_device("r1", "can_radar", 0), can_device("r2", "can_radar", 0)]})
    # A radar shifted onto the launcher's ids (0x300 + 0x200 = 0x500).
    with pytest.raises(ConfigError, match=r"'L1' and 'r1' share a CAN bus and arbitration id 0x500"):
        parse_config({"devices": [can_device("L1", "launcher", 0), can_device("r1", "can_radar", 0x200)]})
    # Apart: offsets that keep the ids disjoint, or another bus.
    ok = parse_config(
        {
            "devices": [
                can_device("r1", "can_radar", 0),
                can_device("r2", "can_radar", 0x10),
                can_device("L1", "launcher", 0),
                can_device("r3", "can_radar", 0, channel="can1"),
            ]
        }
    )
    assert [d.id for d in ok.devices] == ["r1", "r2", "L1", "r3"]
