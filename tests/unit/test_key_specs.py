"""Key specs of a device block (hilgw/keys.py): the one reader both link ends use."""

from __future__ import annotations

from pathlib import Path

import pytest

from hilgw.errors import ConfigError
from hilgw.keys import resolve_keys

SECRET = bytes(range(16))


def test_hex_env_and_file_specs_give_one_secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "k.hex").write_text(SECRET.hex() + "\n", encoding="ascii")
    monkeypatch.setenv("HILGW_TEST_KEY", SECRET.hex())
    specs = {1: f"hex:{SECRET.hex()}", 2: "env:HILGW_TEST_KEY", 3: f"file:{tmp_path / 'k.hex'}"}
    assert resolve_keys(specs) == {1: SECRET, 2: SECRET, 3: SECRET}


@pytest.mark.parametrize(
    ("spec", "why"),
    [
        ("hex:" + SECRET[:15].hex(), "key of 15 bytes"),  # HMAC-SHA256 key below 128 bits
        ("hex:zz", "cannot load key"),
        ("env:HILGW_TEST_KEY_UNSET", "cannot load key"),
        ("file:/nonexistent/key.hex", "cannot load key"),
        ("vault:k1", "unknown key source"),
    ],
)
def test_a_bad_spec_names_the_key_and_why(spec: str, why: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HILGW_TEST_KEY_UNSET", raising=False)
    with pytest.raises(ConfigError) as err:
        resolve_keys({7: spec}, where="devices[launcher-1].cue_keys")
    assert "devices[launcher-1].cue_keys[7]" in str(err.value)
    assert why in str(err.value)
