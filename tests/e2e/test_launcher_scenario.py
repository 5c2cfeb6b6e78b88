"""End to end: a scenario's launcher faults, applied by the launcher emulator
that ``hilgw emulate --scenario F --only ID`` starts, show in the gateway's
cue path, and the cue path recovers after each.

The launcher (serial, on a pty) has a silent heartbeat window, a nack window
and a no-ack window on the scenario clock. The gateway side is a launcher driver and a cue
path in AUTO_CUE, fed with a confirmed track in the launcher's volume whose id
changes every 1.5 s (so a fresh cue is due every 1.5 s). The audit log shows:
cues acked before the faults; the heartbeat loss inhibiting the launcher
(and not one cue sent while inhibited); acks again after it; nacks NOT_READY
in the nack window; acks again after that; ack time-outs and audited resends
in the no-ack window, and acks again after it. The emulator's stopped line
counts what each fault did.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from gateway.config import load_config
from gateway.cue.audit import read_records, verify_file
from hilgw.v1 import cue_pb2
from tests.e2e.cue_rig import Rig, write_keys_file
from tests.unit.cue_support import authority_command
from tests.waiting import WAIT_S, eventually, up_before, wait_ready, with_lead

pytestmark = pytest.mark.e2e

WIRE_KEY = "3c" * 32
KEY_ENV = "HILGW_TEST_LAUNCHER_WIRE_KEY"
HB_TIMEOUT_S = 0.5
SILENT = (3.0, 5.5)  # scenario seconds [start, end)
NACK = (7.5, 9.5)
NO_ACK = (12.0, 14.5)
END_S = 16.5
TRACK_PERIOD_S = 1.5

SCENARIO = f"""
[scenario]
name = "launcher-faults"
seed = 5

[[sites]]
id = "site-l"
lat_deg = 54.0
lon_deg = 10.0
alt_m = 0.0

[[launchers]]
id = "lnch-s"
site = "site-l"
transport = "serial"
launcher_id = 1
keys = {{ 1 = "env:{KEY_ENV}" }}
heartbeat_hz = 20.0
range_max_m = 100000.0

[[faults]]
device = "lnch-s"
kind = "silent_heartbeat"
start_s = {SILENT[0]}
duration_s = {SILENT[1] - SILENT[0]}

[[faults]]
device = "lnch-s"
kind = "launcher_nack"
start_s = {NACK[0]}
duration_s = {NACK[1] - NACK[0]}

[[faults]]
device = "lnch-s"
kind = "launcher_no_ack"
start_s = {NO_ACK[0]}
duration_s = {NO_ACK[1] - NO_ACK[0]}
"""


def gateway_config(tmp: Path, pty: str) -> Path:
    keys = write_keys_file(tmp)
    cfg = tmp / "gw.toml"
    cfg.write_text(f"""
gateway_id = "gw-lf"
[mqtt]
enabled = false

[[devices]]
id = "L1"
protocol = "launcher"
launcher_id = 1
cue_key_id = 1
cue_keys = {{ 1 = "env:{KEY_ENV}" }}
transport = {{ kind = "serial", url = "{pty}", baudrate = 921600 }}

[cue]
keys_file = "{keys}"
audit_path = "{tmp / "audit.jsonl"}"

[[cue.launchers]]
id = "L1"
heartbeat_timeout_s = {HB_TIMEOUT_S}
coverage = {{ lat_deg = 54.0, lon_deg = 10.0, alt_m = 0.0, max_range_m = 100000.0 }}
""")
    return cfg


def at(records: list[dict[str, Any]], kind: str, lo: float, hi: float, epoch_ns: int) -> list[dict[str, Any]]:
    """Records of ``kind`` made in scenario time [lo, hi)."""
    return [r for r in records if r["kind"] == kind and lo <= (r["t_ns"] - epoch_ns) / 1e9 < hi]


async def test_launcher_faults_from_the_scenario_reach_the_cue_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY_ENV, WIRE_KEY)  # both ends read the wire key from here
    scenario = tmp_path / "launcher.toml"
    scenario.write_text(SCENARIO)

    async def run(epoch_ns: int) -> tuple[Path, int, bytes, bytes, int | None]:
        tmp = tmp_path / f"run-{epoch_ns}"  # a run made again starts from an empty audit
        tmp.mkdir()
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway.cli", "emulate", "--scenario", str(scenario),
            "--only", "lnch-s", "--epoch-ns", str(epoch_ns),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            start_new_session=True,  # its launcher emulator is killed with it below
        )  # fmt: skip
        try:
            lines = await wait_ready(proc, what="hilgw emulate")
            (dev,) = [ln for ln in lines if ln["event"] == "device"]
            assert (dev["device"], dev["kind"]) == ("lnch-s", "launcher")
            cfg = load_config(gateway_config(tmp, dev["ready"]["path"]))
            assert cfg.cue is not None

            def track_id() -> int:
                return 100 + int(max(0.0, time.time_ns() - epoch_ns) / 1e9 / TRACK_PERIOD_S)

            rig = Rig(cfg, track_id)
            try:
                path = rig.start_path()
                await eventually(lambda: path.core is not None)
                assert path.core is not None
                core = path.core
                up_before(epoch_ns, "the launcher emulator and the cue path")
                await asyncio.sleep(max(0.0, (epoch_ns - time.time_ns()) / 1e9))  # to scenario t = 0
                cmd = authority_command("auto_cue", 1, time.time_ns(), gateway="gw-lf")
                path.command("authority", cmd.SerializeToString())
                await eventually(lambda: core.authority.value == cue_pb2.AUTHORITY_AUTO_CUE)
                # The scenario plays out on its own clock.
                await asyncio.sleep(max(0.0, (epoch_ns + int(END_S * 1e9) - time.time_ns()) / 1e9))
            finally:
                await rig.close()
            proc.terminate()
            out, err = await asyncio.wait_for(proc.communicate(), WAIT_S)
        finally:
            if proc.returncode is None:
                # The whole group: a SIGKILLed ``hilgw emulate`` does not stop the
                # launcher emulator it started (a retried attempt left one running).
                os.killpg(proc.pid, signal.SIGKILL)
                await proc.wait()
        assert cfg.cue is not None
        return cfg.cue.audit_path, epoch_ns, out, err, proc.returncode

    # Scenario time 0 once both ends are up.
    audit_path, epoch_ns, out, err, returncode = await with_lead(run, 1.5)
    assert returncode == 0, err.decode()[-2000:]

    assert verify_file(audit_path).ok
    recs = list(read_records(audit_path))

    # Before the faults: cues go out and are acked.
    assert at(recs, "acked", 0.0, SILENT[0], epoch_ns)

    # Silent heartbeat: the launcher is inhibited within its timeout (+ 250 ms, and
    # slack for the loaded test machine), and nothing is sent while it is.
    on = [
        r
        for r in at(recs, "inhibit", SILENT[0], SILENT[1], epoch_ns)
        if "heartbeat_lost" in r["data"].get("on", [])
    ]
    assert on, "heartbeat loss did not inhibit the launcher"
    t_on = (on[0]["t_ns"] - epoch_ns) / 1e9
    assert t_on < SILENT[0] + HB_TIMEOUT_S + 0.25 + 0.5
    off = [
        r for r in at(recs, "inhibit", t_on, END_S, epoch_ns) if "heartbeat_lost" in r["data"].get("off", [])
    ]
    assert off, "the inhibit never lifted after the heartbeat came back"
    t_off = (off[0]["t_ns"] - epoch_ns) / 1e9
    assert SILENT[1] <= t_off < SILENT[1] + 1.0
    assert not at(recs, "cue_sent", t_on, t_off, epoch_ns), "a cue left while the launcher was inhibited"
    assert any("heartbeat_lost" in r["data"]["why"] for r in at(recs, "withheld", t_on, t_off, epoch_ns)), (
        "no cue was withheld for the heartbeat loss"
    )

    # Recovery, then the nack window, then recovery again.
    assert at(recs, "acked", t_off, NACK[0], epoch_ns)
    # (a nack is audited twice: the answer, with its reason code, and the cue's end)
    nacked = [r for r in at(recs, "nacked", NACK[0], NACK[1] + 0.5, epoch_ns) if "reason_code" in r["data"]]
    assert nacked
    assert {r["data"]["reason_code"] for r in nacked} == {7}, nacked  # NOT_READY
    assert not at(recs, "nacked", 0.0, NACK[0], epoch_ns)
    assert at(recs, "acked", NACK[1] + 0.1, NO_ACK[0], epoch_ns)

    # No ack: the cue path times out and resends (each resend audited as one),
    # no ack arrives during the window; acks again after it.
    assert at(recs, "ack_timeout", NO_ACK[0], NO_ACK[1] + 0.6, epoch_ns)
    assert at(recs, "cue_resent", NO_ACK[0], NO_ACK[1] + 0.6, epoch_ns)
    assert not at(recs, "ack_timeout", 0.0, NO_ACK[0], epoch_ns)
    sent_in_window = at(recs, "cue_sent", NO_ACK[0], NO_ACK[1], epoch_ns)
    assert sent_in_window
    assert not at(recs, "acked", NO_ACK[0] + 0.1, NO_ACK[1], epoch_ns), "an ack came during the no-ack window"
    assert at(recs, "acked", NO_ACK[1], END_S + 1, epoch_ns)

    stopped = json.loads(out.splitlines()[-1])
    counters = stopped["devices"]["lnch-s"]
    assert counters["fault_heartbeats_silenced"] > 0
    assert counters["fault_acks_withheld"] >= len(sent_in_window)
    # Every NOT_READY the launcher sent is audited as an answer: "nacked" when it
    # ends its cue, "nack_unmatched" when it answers a copy of a cue a first
    # NOT_READY had already ended (a resend after an ack timeout, on a loaded
    # machine: CI once saw 3 verdicts against 2 "nacked").
    not_ready = [
        r for r in recs if r["kind"] in ("nacked", "nack_unmatched") and r["data"].get("reason_code") == 7
    ]
    assert len(nacked) <= len(not_ready)
    assert counters["verdicts"].get("cue:NOT_READY", 0) == len(not_ready)
    assert counters["verdicts"].get("cue:NONE", 0) >= 3


async def test_bench_mode_starts_the_launchers_the_gateway_cues(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """[emulation] + [cue]: the scenario launcher named in [[cue.launchers]] runs as
    an emulator process, becomes a launcher device, and its heartbeats reach the
    cue path (no inhibit left); a launcher that is not cued is not started."""
    from gateway.config import parse_config
    from gateway.supervisor import Gateway
    from hilgw.v1 import health_pb2

    monkeypatch.setenv(KEY_ENV, WIRE_KEY)
    scenario = tmp_path / "launcher.toml"
    scenario.write_text(
        SCENARIO.split("[[faults]]")[0]
        + """
[[launchers]]
id = "lnch-idle"
site = "site-l"
transport = "serial"
range_max_m = 1000.0
"""
    )
    keys = write_keys_file(tmp_path)
    cfg = parse_config(
        {
            "gateway_id": "gw-bench",
            "mqtt": {"enabled": False},
            "emulation": {"scenario": str(scenario)},
            "cue": {
                "keys_file": str(keys),
                "audit_path": str(tmp_path / "audit.jsonl"),
                "launchers": [
                    {
                        "id": "lnch-s",
                        "coverage": {"lat_deg": 54.0, "lon_deg": 10.0, "alt_m": 0.0, "max_range_m": 1e5},
                    }
                ],
            },
        }
    )
    async with Gateway(cfg) as gw:
        assert [d.id for d in gw.devices] == ["lnch-s"]
        dev = gw.devices[0]
        assert (dev.protocol, dev.launcher_id, dev.cue_key_id) == ("launcher", 1, 1)
        await eventually(lambda: gw.stats["lnch-s"].state == health_pb2.DEVICE_STATE_UP)
        await eventually(lambda: gw.cue is not None and gw.cue.core is not None)
        assert gw.cue is not None
        core = gw.cue.core
        assert core is not None
        await eventually(lambda: core.launchers["lnch-s"].last_heartbeat_mono is not None)
        await eventually(lambda: not core.launchers["lnch-s"].inhibits)
        assert core.authority.value == cue_pb2.AUTHORITY_HOLD  # bench mode changes nothing there
