"""udp_multicast CAN devices on different groups of one port (issue 14): apart on Linux,
where the transport keeps each socket to its own group; refused at load elsewhere."""

from __future__ import annotations

import sys

import pytest

from gateway.config import parse_config
from hilgw.errors import ConfigError


def radar(dev_id: str, group: str, **options: object) -> dict[str, object]:
    return {
        "id": dev_id,
        "protocol": "can_radar",
        "site": {"lat_deg": 54.0, "lon_deg": 10.0, "alt_m": 0.0},
        "transport": {"kind": "can", "interface": "udp_multicast", "channel": group, "options": options},
    }


TWO = {"devices": [radar("radar-can", "239.0.0.1"), radar("radar-canfd", "239.0.0.2")]}


def test_two_groups_on_one_port_load_where_isolated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "platform", "linux")
    assert len(parse_config(TWO).devices) == 2


def test_two_groups_on_one_port_are_refused_elsewhere(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "platform", "darwin")
    with pytest.raises(ConfigError) as info:
        parse_config(TWO)
    msg = str(info.value)
    assert "\n" not in msg
    assert "'radar-can' and 'radar-canfd'" in msg
    assert "share port 43113" in msg
    assert "transport.options.port" in msg
    # Told apart by port, or one group for both (one bus): accepted.
    apart = {"devices": [radar("a", "239.0.0.1"), radar("b", "239.0.0.2", port=43114)]}
    assert len(parse_config(apart).devices) == 2
    same = {"devices": [radar("a", "239.0.0.1"), {**radar("b", "239.0.0.1"), "can_id_offset": 0x20}]}
    assert len(parse_config(same).devices) == 2
