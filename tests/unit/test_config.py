"""Config validation: every bad value gives one line naming the key and the reason."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gateway.config import default_config, load_config, parse_config
from hilgw.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]

RADAR = {
    "id": "radar-1",
    "protocol": "serial_radar",
    "transport": {"kind": "serial", "url": "/dev/ttyUSB0"},
    "site": {"lat_deg": 54.0, "lon_deg": 10.0, "alt_m": 20.0},
}


def with_device(**changes: object) -> dict[str, object]:
    dev = {**RADAR, **changes}
    return {"devices": [dev]}


@pytest.mark.parametrize(
    ("raw", "key", "reason"),
    [
        (with_device(transport={"kind": "serial", "url": "/dev/x", "baudrate": 12345}),
         "devices[radar-1].transport.baudrate", "must be one of"),
        (with_device(site=None), "devices[radar-1]", "needs a [site] block"),
        (with_device(site={"lat_deg": 91, "lon_deg": 0, "alt_m": 0}), "devices[radar-1].site.lat_deg", "90"),
        (with_device(protocol="nope"), "devices[radar-1].protocol", "serial_radar"),
        (with_device(transport={"kind": "carrier-pigeon"}), "devices[radar-1].transport", "carrier-pigeon"),
        (with_device(colour="red"), "devices[radar-1].colour", "unknown key"),
        ({"mqtt": {"port": "abc"}}, "mqtt.port", "valid integer"),
        ({"mqtt": {"port": 70000}}, "mqtt.port", "65535"),
        ({"devices": [RADAR, RADAR]}, "", "appears twice"),
        ({"fusion": {"publish_hz": 0}}, "fusion.publish_hz", "greater than 0"),
    ],
)  # fmt: skip
def test_bad_values_name_the_key(raw: dict[str, object], key: str, reason: str) -> None:
    with pytest.raises(ConfigError) as ei:
        parse_config(raw, "lab.toml")
    msg = str(ei.value)
    assert "\n" not in msg
    assert msg.startswith(f"lab.toml: {key}".rstrip() if key else "lab.toml"), msg
    assert reason in msg, msg


def test_default_config_is_the_emulated_bench() -> None:
    cfg = default_config()
    assert cfg.emulation is not None
    assert cfg.emulation.scenario == "builtin:demo"
    assert cfg.mqtt.broker == "embedded"
    assert cfg.devices == []


def test_example_configs_load() -> None:
    for path in sorted((ROOT / "deploy" / "examples").glob("*.toml")):
        load_config(path)


def test_bad_toml_and_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[mqtt\nport = 1")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.toml")


def test_cli_bad_config_is_one_line_and_nonzero(tmp_path: Path) -> None:
    cfg = tmp_path / "gw.toml"
    cfg.write_text(
        '[[devices]]\nid = "radar-1"\nprotocol = "serial_radar"\n'
        '[devices.transport]\nkind = "serial"\nurl = "/dev/ttyUSB0"\nbaudrate = 12345\n'
        "[devices.site]\nlat_deg = 1\nlon_deg = 2\nalt_m = 3\n"
    )
    res = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "run", "--config", str(cfg)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert "devices[radar-1].transport.baudrate" in lines[0]
    assert "Traceback" not in res.stderr


def test_command_connection_keys_default_on_and_are_checked() -> None:
    mqtt = parse_config({"gateway_id": "gw"}).mqtt
    assert mqtt.command_connection is True
    assert mqtt.command_shed_above_per_s > 0
    assert 0 < mqtt.command_rcvbuf_bytes <= 65536
    for key, bad in (("command_shed_above_per_s", -1), ("command_rcvbuf_bytes", 2**30)):
        with pytest.raises(ConfigError, match=key):
            parse_config({"gateway_id": "gw", "mqtt": {key: bad}}, "gw.toml")
