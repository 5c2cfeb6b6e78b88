"""Described devices (issue 19): every mistake in a description is one config error naming the key."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from gateway.config import parse_config
from hilgw.errors import ConfigError
from hilgw.tomlconfig import read_toml

EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "examples" / "vendor-radar"


def _raw() -> dict[str, Any]:
    return read_toml(EXAMPLE / "gateway.toml")


def _error(raw: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(raw, "cfg", base_dir=EXAMPLE)
    msg = str(info.value)
    assert "\n" not in msg
    return msg


def test_the_example_loads_and_compiles_both_descriptions() -> None:
    cfg = parse_config(_raw(), "cfg", base_dir=EXAMPLE)
    can, serial = cfg.devices
    assert can.compiled_codec.frame_id == 1440
    assert serial.compiled_codec.size == 24


def test_the_example_is_config_and_description_files_only() -> None:
    assert {p.suffix for p in EXAMPLE.iterdir()} <= {".toml", ".dbc", ".md"}


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (
            lambda d: d["codec"]["fields"]["range"].update(signal="Obj_Rng"),
            "fields.range.signal: no signal 'Obj_Rng'",
        ),
        (lambda d: d["codec"]["fields"].pop("sigma_range"), "fields.sigma_range: Field required"),
        (
            lambda d: d["codec"]["fields"]["range"].update(unit="parsec"),
            "fields.range.unit: unknown unit 'parsec'",
        ),
        (
            lambda d: d["codec"]["fields"]["range"].update(unit="deg"),
            "fields.range.unit: unit 'deg' is a angle",
        ),
        (lambda d: d["codec"].update(track_frame="VR_Track"), "track_frame: 'VR_Track' is not a message"),
        (lambda d: d["codec"].update(dbc="missing.dbc"), "codec.dbc: cannot read"),
        (
            lambda d: d.update(transport={"kind": "serial", "url": "/dev/x"}),
            "transport.kind: can_dbc_radar runs on can",
        ),
        (lambda d: d.pop("codec"), "codec: this protocol needs a codec description"),
        (lambda d: d.update(protocol="vendor_radar"), "protocol: unknown protocol 'vendor_radar'"),
    ],
)
def test_can_description_errors_name_the_key(edit: Any, expected: str) -> None:
    raw = _raw()
    dev = raw["devices"][0]
    edit(dev)
    msg = _error(raw)
    assert "devices[vr200-can]" in msg
    assert expected in msg


def test_layout_errors_name_the_key(tmp_path: Path) -> None:
    layout = read_toml(EXAMPLE / "vendor_serial_layout.toml")
    bad = copy.deepcopy(layout)
    bad["fields"]["elevation"]["signal"] = "elevation"
    raw = _raw()
    raw["devices"][1]["codec"] = bad
    assert "codec.fields.elevation.signal: no signal 'elevation'" in _error(raw)
    bad = copy.deepcopy(layout)
    bad["layout"][0]["type"] = "u12"
    raw["devices"][1]["codec"] = bad
    assert "codec.layout[0].type" in _error(raw)
