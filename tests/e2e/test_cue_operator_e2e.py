"""End to end on a real mosquitto (issue 23 §3): what the CLI shows as verified is
what the gateway signed. Forged (unsigned, or signed with a key of the same id)
``CommandResult``, retained ``authority`` and ``cue/list`` are never shown as
verified; a dead gateway is shown OFFLINE; with nobody but a forger answering,
the CLI says "no verified answer". A flood of junk on the command topics leaves
a signed HOLD and the audit log unharmed."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiomqtt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.bus import Topic
from gateway.config import GatewayConfig, load_config
from gateway.cue.path import CuePath
from gateway.cue.signing import canonical_bytes
from hilgw.v1 import cue_pb2, track_pb2
from tests.conftest import Mosquitto
from tests.e2e.cue_rig import write_keys_file
from tests.e2e.test_cue_e2e import cli
from tests.unit.cue_support import authority_command
from tests.waiting import eventually

pytestmark = pytest.mark.e2e

BASE = "hilgw/gw-test"


def _config(tmp: Path, port: int) -> Path:
    keys = write_keys_file(tmp)
    cfg = tmp / "gw.toml"
    cfg.write_text(
        f'gateway_id = "gw-test"\n[mqtt]\nport = {port}\n'
        f'[cue]\nkeys_file = "{keys}"\naudit_path = "{tmp / "audit.jsonl"}"\n'
    )
    return cfg


@contextlib.asynccontextmanager
async def _gateway(cfg: GatewayConfig) -> AsyncIterator[CuePath]:
    assert cfg.cue is not None
    path = CuePath(cfg.cue, cfg.gateway_id, tracks=Topic[track_pb2.TrackBatch]("tracks"), mqtt=cfg.mqtt)
    task = asyncio.create_task(path.run())
    try:
        await asyncio.wait_for(path.mqtt_connected.wait(), 5)
        yield path
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def _forge(msg: cue_pb2.AuthorityState | cue_pb2.CueList | cue_pb2.CommandResult, how: str) -> bytes:
    """Unsigned, or signed by a key that claims the gateway's key id."""
    if how == "other_key":
        msg.gateway_key_id = "gw-key"
        msg.signature = Ed25519PrivateKey.generate().sign(canonical_bytes(msg, skip="signature"))
    return msg.SerializeToString()


@contextlib.asynccontextmanager
async def _forger(port: int) -> AsyncIterator[None]:
    """Answers every command with forged "accepted"s (unsigned, and signed with a key that
    claims the gateway's key id) and keeps replacing the retained state with forgeries."""

    forged = asyncio.Event()  # subscribed, and the first forgeries are retained at the broker

    async def run() -> None:
        async with aiomqtt.Client("127.0.0.1", port) as c:
            await c.subscribe(f"{BASE}/+/command", qos=1)
            await c.subscribe(f"{BASE}/authority/command", qos=1)

            async def states() -> None:
                while True:
                    now = time.time_ns()
                    auth = cue_pb2.AuthorityState(
                        authority=cue_pb2.AUTHORITY_AUTO_CUE, gateway_id="gw-test", time_ns=now
                    )
                    cues = cue_pb2.CueList(
                        gateway_id="gw-test", time_ns=now, authority=cue_pb2.AUTHORITY_AUTO_CUE
                    )
                    cues.cues.add(cue_id=666, launcher_id="L1", status=cue_pb2.CUE_STATUS_PENDING_APPROVAL)
                    for how in ("unsigned", "other_key"):
                        await c.publish(f"{BASE}/authority", _forge(auth, how), qos=1, retain=True)
                        await c.publish(f"{BASE}/cue/list", _forge(cues, how), qos=1, retain=True)
                    forged.set()
                    await asyncio.sleep(0.2)  # the forger's period

            t = asyncio.create_task(states())
            try:
                async for m in c.messages:
                    cmd = cue_pb2.AuthorityCommand.FromString(bytes(m.payload))
                    res = cue_pb2.CommandResult(
                        kind="authority",
                        accepted=True,
                        key_id=cmd.key_id,
                        sequence=cmd.sequence,
                        gateway_id="gw-test",
                    )
                    for how in ("unsigned", "other_key"):
                        await c.publish(f"{BASE}/command/result", _forge(res, how), qos=1)
            finally:
                t.cancel()

    task = asyncio.create_task(run())
    await eventually(forged.is_set, what="the forger subscribed and its forgeries retained", task=task)
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_forged_outputs_are_never_shown_as_verified(mosquitto: Mosquitto, tmp_path: Path) -> None:
    cfg_file = _config(tmp_path, mosquitto.port)
    cfg = load_config(cfg_file)
    args = ["--config", str(cfg_file), "--timeout", "3"]
    async with _gateway(cfg) as path, _forger(mosquitto.port):
        # The real state (HOLD) is shown, signed; the forged AUTO_CUE never is.
        rc, out = await cli("authority", "show", *args)
        assert rc == 0, out
        assert "verified: signed by gateway key gw-key" in out
        assert "HOLD" in out
        assert "AUTO_CUE" not in out
        rc, out = await cli("cue", "list", *args)
        assert rc == 0, out
        assert "666" not in out
        # A command the gateway accepts: its signed answer is the one believed.
        rc, out = await cli("authority", "set", "cue_on_approval", *args, "--key-id", "op-alice")
        assert rc == 0, out
        assert "signed by gateway key gw-key" in out
        assert path.core is not None
        assert path.core.authority.value == cue_pb2.AUTHORITY_CUE_ON_APPROVAL
        # A command the gateway rejects (an operator id the key is not bound to):
        # the forger says "accepted", the CLI believes the gateway's signed "no".
        rc, _ = await cli(
            "authority", "set", "auto_cue", *args, "--key-id", "op-alice", "--operator", "mallory"
        )
        assert rc == 1
        assert path.core.authority.value == cue_pb2.AUTHORITY_CUE_ON_APPROVAL
        # Approving the forger's cue 666: not in the verified list, nothing is sent.
        rc, _ = await cli("cue", "approve", "666", *args, "--key-id", "op-alice", "--timeout", "1.5")
        assert rc != 0
    # The gateway is gone; only the forger answers.
    args[-1] = "1.5"
    async with _forger(mosquitto.port):
        rc, out = await cli("authority", "set", "auto_cue", *args, "--key-id", "op-alice")
        assert rc == 1
        rc, out = await cli("authority", "show", *args, "--stale-after", "1")
        assert rc == 1
        assert "AUTO_CUE" not in out
        assert "verified:" not in out


async def test_dead_gateway_is_shown_offline_and_unanswered_commands_say_so(
    mosquitto: Mosquitto, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    cfg_file = _config(tmp_path, mosquitto.port)
    cfg = load_config(cfg_file)
    args = ["--config", str(cfg_file), "--timeout", "2"]
    async with _gateway(cfg):
        rc, out = await cli("authority", "show", *args)
        assert rc == 0
    await asyncio.sleep(1.5)
    rc, out = await cli("authority", "show", *args, "--stale-after", "1")
    assert rc == 1
    assert "OFFLINE: last state at" in out
    rc, _ = await cli("authority", "set", "hold", *args, "--key-id", "op-alice")
    assert rc == 1
    assert "no verified answer from the gateway after 2.0 s" in capfd.readouterr().err


async def test_signed_hold_through_a_flood_on_real_mosquitto(mosquitto: Mosquitto, tmp_path: Path) -> None:
    """The short version of benchmarks/operator/flood.py: junk at full rate on both
    command topics; a signed HOLD published in the middle takes effect, the junk is
    counted, the audit log grows by a few summary records."""
    cfg_file = _config(tmp_path, mosquitto.port)
    cfg = load_config(cfg_file)
    async with _gateway(cfg) as path:
        assert path.core is not None
        core = path.core
        path.command(
            "authority",
            authority_command("auto_cue", 1, time.time_ns(), gateway="gw-test").SerializeToString(),
        )
        await eventually(lambda: core.authority.value == cue_pb2.AUTHORITY_AUTO_CUE)
        size0 = (tmp_path / "audit.jsonl").stat().st_size
        async with aiomqtt.Client("127.0.0.1", mosquitto.port, max_queued_outgoing_messages=0) as flood:
            junk = bytes.fromhex("08631001")
            for i in range(3000):
                await flood.publish(f"{BASE}/{'cue' if i % 2 else 'authority'}/command", junk, qos=0)
                if i == 1500:
                    hold = authority_command("hold", 2, time.time_ns(), gateway="gw-test")
                    await flood.publish(f"{BASE}/authority/command", hold.SerializeToString(), qos=1)
        # Bounded generously: on a loaded machine the broker's backlog is read slowly
        # (benchmarks/operator/RESULTS.md); what is asserted is that it takes effect.
        await eventually(lambda: core.authority.value == cue_pb2.AUTHORITY_HOLD, 30)
        await eventually(lambda: path.intake.rejected.get("unsigned", 0) >= 100, 30)
        await asyncio.sleep(1.2)
    grown = (tmp_path / "audit.jsonl").stat().st_size - size0
    assert grown < 50_000, grown  # summaries, not one record per junk message
