"""The supervisor starts the cue path when [cue] is configured: in HOLD, with
every configured launcher joined to its device, and refuses a [cue] launcher
that has no launcher device."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from gateway.config import parse_config
from gateway.cue.core import HOLD
from gateway.supervisor import Gateway
from gateway.transports import memory_registry
from hilgw.errors import ConfigError
from tests.waiting import eventually


def config(tmp: Path, launcher_device_id: str = "L1") -> dict[str, Any]:
    keys = tmp / "keys.toml"
    keys.write_text(
        f'[operator.op-alice]\nsecret = "{"11" * 32}"\noperator = "alice"\n'
        f'[launcher.lk-1]\nsecret = "{"a1" * 32}"\n'
    )
    os.chmod(keys, 0o600)
    return {
        "gateway_id": "gw-cue",
        "mqtt": {"enabled": False},
        "devices": [
            {
                "id": launcher_device_id,
                "protocol": "launcher",
                "launcher_id": 1,
                "cue_key_id": 1,
                "cue_keys": {1: "hex:" + "b2" * 32},
                "transport": {"kind": "memory", "name": f"cue-{tmp.name}"},
                # A site on a launcher must not make it a fusion sensor.
                "site": {"lat_deg": 54.0, "lon_deg": 10.0, "alt_m": 0.0},
            }
        ],
        "cue": {
            "keys_file": str(keys),
            "audit_path": str(tmp / "audit.jsonl"),
            "launchers": [
                {
                    "id": "L1",
                    "coverage": {"lat_deg": 54.0, "lon_deg": 10.0, "alt_m": 0.0, "max_range_m": 1e5},
                }
            ],
        },
    }


async def test_gateway_starts_the_cue_path_in_hold(tmp_path: Path) -> None:
    cfg = parse_config(config(tmp_path))
    try:
        async with Gateway(cfg) as gw:
            assert gw.cue is not None
            cue = gw.cue
            await eventually(lambda: cue.core is not None, what="the cue core")
            assert gw.cue.core is not None
            assert gw.cue.core.authority.value == HOLD
            assert gw.fusion.engine.sensors == []  # the launcher is no sensor
            assert (tmp_path / "audit.jsonl").exists()
            assert any(t.get_name() == "cue" and not t.done() for t in gw.task_list)
    finally:
        memory_registry.forget(f"cue-{tmp_path.name}")


async def test_cue_launcher_without_device_is_a_config_error(tmp_path: Path) -> None:
    # Refused when the config loads (not only when the gateway starts): a
    # gateway cues only the launchers it owns.
    with pytest.raises(ConfigError, match=r"cue.launchers\[L1\]: no launcher device"):
        parse_config(config(tmp_path, launcher_device_id="L9"))
    memory_registry.forget(f"cue-{tmp_path.name}")


async def test_healthz_and_metrics_show_the_operator_path(tmp_path: Path) -> None:
    """Rejected commands by reason on /metrics; /healthz unhealthy once the audit log fails."""
    from gateway.cue.audit import AuditError
    from gateway.metrics import GatewayMetrics, health_check

    cfg = parse_config(config(tmp_path))
    try:
        async with Gateway(cfg) as gw:
            cue = gw.cue
            assert cue is not None
            await eventually(lambda: cue.core is not None and cue.running, what="the cue path running")
            core = cue.core
            assert core is not None
            ok, body = health_check(gw)
            assert not [r for r in body["reasons"] if "cue" in r]
            cue.command("cue", bytes.fromhex("08631001"))
            cue.command("authority", b"\xff" * 10_000)
            text = GatewayMetrics(gw).exposition().decode()
            assert 'hilgw_cue_commands_rejected_total{reason="unsigned"} 1.0' in text
            assert 'hilgw_cue_commands_rejected_total{reason="too_large"} 1.0' in text
            assert "hilgw_cue_audit_ok 1.0" in text

            def broken() -> None:
                core.audit.failures += 1
                raise AuditError("disk full (injected)")

            core.audit.flush = broken  # type: ignore[method-assign]
            # The next event's flush fails: HOLD, audit inhibit.
            await eventually(lambda: not core.audit_ok, what="the audit failure seen")
            ok, body = health_check(gw)
            assert not ok
            assert any("audit log failed" in r for r in body["reasons"])
            text = GatewayMetrics(gw).exposition().decode()
            assert "hilgw_cue_audit_ok 0.0" in text
            failures = [ln for ln in text.splitlines() if ln.startswith("hilgw_cue_audit_failures_total ")]
            assert float(failures[0].split()[1]) >= 1
            assert core.authority.value == HOLD
    finally:
        memory_registry.forget(f"cue-{tmp_path.name}")
