"""End to end: operator CLI -> real mosquitto -> cue path -> launcher driver ->
launcher emulator process on a pty, and back (acks, heartbeats). The emulator
checks sequence, window and MAC on its own; the test reads its verdicts from
its stdout. Restart comes up in HOLD and sequences continue above the
emulator's highest; the audit log verifies at the end."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from gateway.cli import main as cli_main
from gateway.config import load_config
from gateway.cue.audit import read_records, verify_file
from hilgw.v1 import cue_pb2
from tests.conftest import Mosquitto
from tests.e2e.cue_rig import Rig, write_keys_file
from tests.unit.cue_support import authority_command
from tests.waiting import WAIT_S, eventually, wait_ready

pytestmark = pytest.mark.e2e

WIRE_KEY = "5a" * 32


class Emulator:
    def __init__(self, proc: asyncio.subprocess.Process, ready: dict[str, Any]) -> None:
        self.proc = proc
        self.ready = ready
        self.events: list[dict[str, Any]] = []
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        async for line in self.proc.stdout:
            with contextlib.suppress(ValueError):
                self.events.append(json.loads(line))

    def accepted(self, kind: str = "cue") -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("event") == kind and e.get("reason") == "NONE"]

    async def stop(self) -> None:
        if self.proc.returncode is None:
            self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), 5)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader


@contextlib.asynccontextmanager
async def launcher_emulator() -> AsyncIterator[Emulator]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "sim_devices.launcher_emulator",
        "--transport",
        "serial",
        "--launcher-id",
        "1",
        "--key",
        f"1:{WIRE_KEY}",
        "--heartbeat-hz",
        "10",
        stdout=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    (ready,) = await wait_ready(proc, what="launcher emulator")
    emu = Emulator(proc, ready)
    try:
        yield emu
    finally:
        await emu.stop()


def write_config(tmp: Path, port: int, pty: str) -> Path:
    keys = write_keys_file(tmp)
    cfg = tmp / "gw.toml"
    cfg.write_text(f"""
gateway_id = "gw-test"
[mqtt]
port = {port}

[[devices]]
id = "L1"
protocol = "launcher"
launcher_id = 1
cue_key_id = 1
cue_keys = {{ 1 = "hex:{WIRE_KEY}" }}
transport = {{ kind = "serial", url = "{pty}", baudrate = 921600 }}

[cue]
keys_file = "{keys}"
audit_path = "{tmp / "audit.jsonl"}"
approval_timeout_s = 20.0

[[cue.launchers]]
id = "L1"
coverage = {{ lat_deg = 54.0, lon_deg = 10.0, alt_m = 0.0, max_range_m = 100000.0 }}
""")
    return cfg


async def cli(*args: str) -> tuple[int, str]:
    """Run ``hilgw ARGS`` (its own asyncio loop, in a thread) and capture stdout."""
    import io
    from contextlib import redirect_stdout

    def run() -> tuple[int, str]:
        buf = io.StringIO()
        with redirect_stdout(buf):
            rc = cli_main(list(args))
        return rc, buf.getvalue()

    return await asyncio.to_thread(run)


async def test_cue_path_end_to_end(mosquitto: Mosquitto, tmp_path: Path) -> None:
    async with launcher_emulator() as emu:
        cfg_file = write_config(tmp_path, mosquitto.port, emu.ready["path"])
        cfg = load_config(cfg_file)
        assert cfg.cue is not None
        rig = Rig(cfg)
        try:
            path = rig.start_path()
            await asyncio.wait_for(path.mqtt_connected.wait(), WAIT_S)
            await eventually(lambda: path.core is not None and not path.core.launchers["L1"].inhibits)
            assert not emu.accepted()  # heartbeats arrive, a track is there; HOLD: nothing leaves
            rc, out = await cli("authority", "show", "--config", str(cfg_file))
            assert rc == 0
            assert "HOLD" in out

            # CUE_ON_APPROVAL: a pending cue, approved from the CLI, reaches the emulator.
            rc, out = await cli(
                "authority", "set", "cue_on_approval", "--config", str(cfg_file), "--key-id", "op-alice"
            )
            assert (rc, "accepted" in out) == (0, True)
            assert path.core is not None
            core = path.core
            await eventually(
                lambda: any(c.status == cue_pb2.CUE_STATUS_PENDING_APPROVAL for c in core.open_cues())
            )
            rc, out = await cli("cue", "list", "--config", str(cfg_file))
            assert rc == 0
            assert "PENDING_APPROVAL" in out
            (pending,) = core.open_cues()
            rc, _ = await cli(
                "cue", "approve", str(pending.cue_id), "--config", str(cfg_file), "--key-id", "op-alice"
            )
            assert rc == 0
            await eventually(lambda: bool(emu.accepted()))
            await eventually(lambda: any(r.status == cue_pb2.CUE_STATUS_ACKED for r in core.cue_list().cues))
            assert emu.accepted()[0]["cue_id"] == pending.cue_id

            # HOLD: the live cue is cancelled at the launcher.
            rc, _ = await cli("authority", "set", "hold", "--config", str(cfg_file), "--key-id", "op-alice")
            assert rc == 0
            await eventually(lambda: bool(emu.accepted("cancel")))

            # A replayed (captured) command is rejected and audited; authority stays HOLD.
            captured = authority_command("auto_cue", 10**17, __import__("time").time_ns(), gateway="gw-test")
            async with aiomqtt.Client("127.0.0.1", mosquitto.port) as op:
                await op.subscribe("hilgw/gw-test/command/result", qos=1)
                for expect in (True, False):
                    await op.publish("hilgw/gw-test/authority/command", captured.SerializeToString(), qos=1)
                    async with asyncio.timeout(WAIT_S):
                        async for msg in op.messages:
                            res = cue_pb2.CommandResult.FromString(bytes(msg.payload))
                            if res.sequence == captured.sequence:
                                break
                    assert res.accepted is expect, res
                    if expect:
                        await eventually(lambda: len(emu.accepted()) >= 2)  # AUTO_CUE sends at once
                        rc, _ = await cli(
                            "authority",
                            "set",
                            "hold",
                            "--config",
                            str(cfg_file),
                            "--key-id",
                            "op-alice",
                            "--sequence",
                            str(10**17 + 1),
                        )
                        assert rc == 0
            assert res.reason == "replayed"
            assert core.authority.value == cue_pb2.AUTHORITY_HOLD

            # Restart: HOLD again, and sequences continue above what the emulator holds.
            highest = max(e["sequence"] for e in emu.events if e.get("event") in ("cue", "cancel"))
            await rig.stop_path()
            path = rig.start_path()
            await asyncio.wait_for(path.mqtt_connected.wait(), WAIT_S)
            await eventually(lambda: path.core is not None)
            assert path.core is not None
            assert path.core.authority.value == cue_pb2.AUTHORITY_HOLD
            rc, _ = await cli(
                "authority",
                "set",
                "auto_cue",
                "--config",
                str(cfg_file),
                "--key-id",
                "op-alice",
                "--sequence",
                str(10**17 + 2),
            )
            assert rc == 0
            await eventually(lambda: any(e["sequence"] > highest for e in emu.accepted()))
            assert not [e for e in emu.events if e.get("reason") in ("REPLAY", "BAD_MAC", "UNSIGNED")]
        finally:
            await rig.close()

    assert cfg.cue is not None
    assert verify_file(cfg.cue.audit_path).ok
    kinds = [r["kind"] for r in read_records(cfg.cue.audit_path)]
    for k in (
        "startup",
        "authority_changed",
        "pending_approval",
        "approved",
        "cue_sent",
        "acked",
        "cancel_sent",
        "commands_rejected",  # the replay: pre-checked, counted, summarised (not one record each)
    ):
        assert k in kinds, k
    assert kinds.count("startup") == 2
    rc, out = await cli("audit", "verify", str(cfg.cue.audit_path))
    assert rc == 0
    # One MAC per cue: the journal names, for every cue and cancel, the very tag the
    # launcher received and verified on the wire (docs/cue-path.md §3).
    journaled = {
        (r["data"]["sequence"], r["data"]["mac"])
        for r in read_records(cfg.cue.audit_path)
        if r["kind"] in ("cue_sent", "cue_resent", "cancel_sent", "restart_cancel")
    }
    received = {(e["sequence"], e["mac"]) for e in emu.events if e.get("event") in ("cue", "cancel")}
    assert received
    assert received <= journaled
