"""The cue keys file is checked before anything starts (issue 23, item 6):
``hilgw run`` exits 2 with one line, ``hilgw doctor`` shows a failed row."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gateway.cli import main
from gateway.config import parse_config
from gateway.cue.keyfile import check_key_file
from gateway.doctor import Result, check_keys_file
from hilgw.errors import ConfigError

SECRET = "11" * 32


def _keys(directory: Path, mode: int = 0o600) -> Path:
    p = directory / "keys.toml"
    # With the gateway's own signing key: without one, doctor warns that
    # results and state go out unsigned (tests/unit/test_cue_operator.py).
    p.write_text(f'[operator.op-a]\nsecret = "{SECRET}"\n[gateway.gw-1]\nsecret = "{"33" * 32}"\n')
    os.chmod(p, mode)
    return p


def _config_file(directory: Path, keys: Path) -> Path:
    cfg = directory / "gw.toml"
    cfg.write_text(
        f'[mqtt]\nenabled = false\n[cue]\nkeys_file = "{keys}"\naudit_path = "{directory / "audit.log"}"\n'
    )
    return cfg


def test_a_private_file_passes(tmp_path: Path) -> None:
    check_key_file(_keys(tmp_path))


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o620, 0o666])
def test_group_or_other_access_is_refused(tmp_path: Path, mode: int) -> None:
    with pytest.raises(ConfigError, match=rf"mode 0{mode:o}\); run chmod 600"):
        check_key_file(_keys(tmp_path, mode))


def test_a_symlink_is_refused_unless_allowed(tmp_path: Path) -> None:
    real = _keys(tmp_path)
    link = tmp_path / "link.toml"
    link.symlink_to(real)
    with pytest.raises(ConfigError, match="symbolic link"):
        check_key_file(link)
    check_key_file(link, allow_symlink=True)
    # Allowed, a link still leads to a file that must pass every other check.
    os.chmod(real, 0o644)
    with pytest.raises(ConfigError, match="group/others"):
        check_key_file(link, allow_symlink=True)


def test_a_world_writable_directory_is_refused(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    keys = _keys(shared)
    os.chmod(shared, 0o1777)  # like /tmp: sticky does not make it safe
    with pytest.raises(ConfigError, match="writable by everyone"):
        check_key_file(keys)


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")
def test_a_file_of_another_user_is_refused(tmp_path: Path) -> None:
    keys = _keys(tmp_path)
    os.chown(keys, 1, -1)
    with pytest.raises(ConfigError, match="owned by uid 1"):
        check_key_file(keys)


def test_hilgw_run_exits_2_with_one_line_before_starting(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = _config_file(tmp_path, _keys(tmp_path, 0o644))
    assert main(["run", "--config", str(cfg), "--duration", "0.1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert "keys file is accessible by group/others (mode 0644)" in err
    assert "Traceback" not in err


def test_hilgw_run_refuses_a_missing_keys_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = _config_file(tmp_path, tmp_path / "nowhere.toml")
    assert main(["run", "--config", str(cfg), "--duration", "0.1"]) == 2
    assert "keys file: cannot stat" in capsys.readouterr().err


def test_doctor_row_fails_with_the_fix(tmp_path: Path) -> None:
    keys = _keys(tmp_path, 0o640)
    config = parse_config({"mqtt": {"enabled": False}, "cue": {"keys_file": str(keys), "audit_path": "a"}})
    row = check_keys_file(config)
    assert row.result is Result.FAIL
    assert "mode 0640" in row.detail
    assert row.fix == "run chmod 600 " + str(keys)
    os.chmod(keys, 0o600)
    assert check_keys_file(config).result is Result.PASS
