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
