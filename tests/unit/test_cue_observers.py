"""The cue path feeds the situation display and /metrics (docs/operations.md):
authority and cue list on every change (MQTT off), and the cue-to-ack latency
into ``hilgw_cue_ack_seconds``; observation only, an observer's failure never
reaches the cue path.

The gateway runs with [cue], [metrics] and [web] on 127.0.0.1; the launcher end
of its memory link is the launcher emulator's logic (heartbeats, ack/nack) over
the serial ICD codec.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from drivers.base import Role
from drivers.launcher import Cue, CueCancel, LauncherSerialCodec
from gateway.config import parse_config
from gateway.cue.path import CuePath
from gateway.supervisor import Gateway
from gateway.transports import memory_registry
from hilgw.v1 import cue_pb2
from sim_devices.launcher_emulator import LauncherEmulator
from tests.unit.cue_support import Harness, authority_command, make_batch, make_track
from tests.waiting import eventually

GW_ID = "gw-obs"
WIRE_KEY = bytes.fromhex("b2" * 32)  # the launcher device's cue key (ICD §7)
TRACK = 7


def config(tmp: Path, link: str) -> dict[str, Any]:
    keys = tmp / "keys.toml"
    keys.write_text(
        f'[operator.op-alice]\nsecret = "{"11" * 32}"\noperator = "alice"\n'
        f'[launcher.lk-1]\nsecret = "{"a1" * 32}"\n'
    )
    os.chmod(keys, 0o600)
    return {
        "gateway_id": GW_ID,
        "mqtt": {"enabled": False},
        # Fusion (no sensor here) would publish empty pictures that drop the
        # test's track: once in 100 s is never within a test.
        "fusion": {"publish_hz": 0.01},
        "devices": [
            {
                "id": "L1",
                "protocol": "launcher",
                "launcher_id": 1,
                "cue_key_id": 1,
                "cue_keys": {1: "hex:" + WIRE_KEY.hex()},
                "transport": {"kind": "memory", "name": link},
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
        "metrics": {"host": "127.0.0.1", "port": 0},
        "web": {"host": "127.0.0.1", "port": 0, "update_hz": 10.0},
    }


async def launcher_end(link: str) -> None:
    """The launcher: heartbeats at 20 Hz, and an ack or nack for every cue and cancel."""
    end = memory_registry.link(link)[1]
    await end.open()
    codec = LauncherSerialCodec(Role.DEVICE, launcher_id=1, keys={1: WIRE_KEY})
    emu = LauncherEmulator(1, {1: WIRE_KEY})

    async def heartbeats() -> None:
        while True:
            await end.write(codec.send(emu.heartbeat()))
            await asyncio.sleep(0.05)

    async with asyncio.TaskGroup() as tg:
        tg.create_task(heartbeats())
        while True:
            codec.receive_data(await end.read())
            for event in codec.drain():
                if isinstance(event, Cue | CueCancel):
                    ack = emu.handle(event)
                    if ack is not None:
                        await end.write(codec.send(ack))


@contextlib.asynccontextmanager
async def running(tmp: Path) -> AsyncIterator[tuple[Gateway, CuePath, aiohttp.ClientSession]]:
    link = f"obs-{tmp.name}"
    try:
        async with Gateway(parse_config(config(tmp, link))) as gw, aiohttp.ClientSession() as http:
            launcher = asyncio.create_task(launcher_end(link))
            try:
                cue = gw.cue
                assert cue is not None
                await eventually(lambda: cue.core is not None and not cue.core.launchers["L1"].inhibits)
                yield gw, cue, http
            finally:
                launcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await launcher
    finally:
        memory_registry.forget(link)


async def scrape(
    gw: Gateway, http: aiohttp.ClientSession
) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    async with http.get(f"http://127.0.0.1:{gw.endpoints['metrics'].port}/metrics") as resp:
        assert resp.status == 200
        text = await resp.text()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
    }


async def display_state(gw: Gateway, http: aiohttp.ClientSession) -> dict[str, Any]:
    async with http.get(f"http://127.0.0.1:{gw.endpoints['web'].port}/state.json") as resp:
        assert resp.status == 200
        state: dict[str, Any] = await resp.json()
    return state


def authority_samples(m: dict[tuple[str, tuple[tuple[str, str], ...]], float]) -> dict[str, float]:
    return {dict(k[1])["state"]: v for k, v in m.items() if k[0] == "hilgw_authority"}


def command(cue: CuePath, requested: str, seq: int) -> None:
    cmd = authority_command(requested, seq, time.time_ns(), gateway=GW_ID)
    cue.command("authority", cmd.SerializeToString())


async def test_authority_cues_and_ack_latency_reach_display_and_metrics(tmp_path: Path) -> None:
    async with running(tmp_path) as (gw, cue, http):
        assert gw.web is not None
        assert gw.metrics is not None
        assert authority_samples(await scrape(gw, http)) == {"HOLD": 1}
        assert (await display_state(gw, http))["authority"] == "HOLD"

        # An authenticated authority command: the display and /metrics follow.
        command(cue, "cue_on_approval", 1)
        await eventually(
            lambda: gw.web is not None and gw.web.authority == "CUE_ON_APPROVAL", what="display authority"
        )
        assert authority_samples(await scrape(gw, http)) == {"CUE_ON_APPROVAL": 1}
        assert (await display_state(gw, http))["authority"] == "CUE_ON_APPROVAL"
        assert (await display_state(gw, http))["cues"] == []

        # A listener registered while the path runs gets the current state at once.
        late: list[tuple[str, int]] = []
        cue.on_state(lambda a, c: late.append((cue_pb2.Authority.Name(a.authority), len(c.cues))))
        assert late == [("AUTHORITY_CUE_ON_APPROVAL", 0)]

        # AUTO_CUE and a confirmed track inside L1's coverage: a cue goes out, the
        # launcher acks it, and the display shows it with its status.
        start = time.monotonic()
        command(cue, "auto_cue", 2)
        await eventually(
            lambda: gw.web is not None and gw.web.authority == "AUTO_CUE", what="display authority"
        )
        seq = 0

        def acked() -> bool:
            nonlocal seq
            seq += 1
            now = time.time_ns()
            gw.tracks.publish(make_batch([make_track(TRACK, t_ns=now)], now, seq))
            assert gw.web is not None
            return any(c["status"] == "ACKED" for c in gw.web.cues)

        await eventually(acked, what="an ACKED cue on the display")
        elapsed = time.monotonic() - start
        state = await display_state(gw, http)
        assert state["authority"] == "AUTO_CUE"
        assert len(state["cues"]) == 1
        row = state["cues"][0]
        assert row == {"cue_id": row["cue_id"], "launcher_id": "L1", "track_id": TRACK, "status": "ACKED"}
        assert cue.core is not None
        assert row["cue_id"] in cue.core.cues

        m = await scrape(gw, http)
        assert authority_samples(m) == {"AUTO_CUE": 1}
        launcher = (("launcher", "L1"),)
        assert m[("hilgw_cue_ack_seconds_count", launcher)] == 1
        # From the send to the ack: after the command was given, so within this step.
        assert 0 < m[("hilgw_cue_ack_seconds_sum", launcher)] <= elapsed
        assert cue.core.counters.get("acked") == 1


async def test_a_failing_listener_does_not_stop_the_cue_path(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with running(tmp_path) as (gw, cue, _http):
        core = cue.core

        def broken(*_: object) -> None:
            raise RuntimeError("observer bug")

        cue.on_state(broken)  # called at once (the path runs): logged, not raised
        command(cue, "cue_on_approval", 1)
        # The display's listener (registered first) and the path itself go on.
        await eventually(
            lambda: gw.web is not None and gw.web.authority == "CUE_ON_APPROVAL", what="display authority"
        )
        command(cue, "hold", 2)
        await eventually(lambda: gw.web is not None and gw.web.authority == "HOLD", what="display authority")
        assert cue.core is core  # the same core: the task was never restarted
        assert core is not None
        assert core.counters.get("authority_changed") == 2
        failures = [r for r in caplog.records if r.exc_info and "observer bug" in str(r.exc_info[1])]
        assert len(failures) == 3  # once on registration, once for each change


async def test_a_stopped_cue_path_shows_hold(tmp_path: Path) -> None:
    """When the cue path's task ends (failure or stop), nothing can be cued until
    a restart that comes up in HOLD: the display and metrics show HOLD at once,
    not the last authority."""
    async with running(tmp_path) as (gw, cue, _http):
        command(cue, "cue_on_approval", 1)
        await eventually(
            lambda: gw.web is not None and gw.web.authority == "CUE_ON_APPROVAL", what="display authority"
        )
        (task,) = [t for t in gw.task_list if t.get_name() == "cue"]
        task.cancel()
        await eventually(
            lambda: gw.web is not None and gw.web.authority == "HOLD", what="display back to HOLD"
        )
        assert gw.web is not None
        assert gw.web.cues == []
        assert gw.metrics is not None
        assert gw.metrics.authority == "HOLD"


# --- the core's part: send time and ack latency (pure, deterministic clock) ------------


def test_core_reports_latency_from_the_last_send_to_the_ack() -> None:
    h = Harness(auto_ack=False)
    h.heartbeat()
    h.set_authority("auto_cue")
    h.tracks(make_track(TRACK, t_ns=h.now.wall_ns))
    assert len(h.sent) == 1
    assert not h.core.ack_latency
    h.now = h.now.plus(0.3)
    h.heartbeat()  # the ack timeout (0.5 s) has not run out: no resend
    h.now = h.now.plus(0.05)
    h.deliver_acks()
    assert list(h.core.ack_latency) == [("L1", 350_000_000)]
    assert h.core.cues[h.sent[0].cue_id].status == cue_pb2.CUE_STATUS_ACKED

    # A second ack of the same cue changes nothing and is not observed again.
    dup = cue_pb2.CueAck(
        cue_id=h.sent[0].cue_id, launcher_id="L1", result=cue_pb2.ACK_RESULT_ACK, sequence=h.sent[0].sequence
    )
    h.apply(h.core.on_ack(dup, h.now))
    assert len(h.core.ack_latency) == 1


def test_core_reports_nack_latency_and_ignores_unmatched_acks() -> None:
    h = Harness(auto_ack=False)
    h.heartbeat()
    h.set_authority("auto_cue")
    h.tracks(make_track(TRACK, t_ns=h.now.wall_ns))
    sent = h.sent[-1]
    h.pending_acks.clear()
    h.now = h.now.plus(0.1)
    stray = cue_pb2.CueAck(
        cue_id=999, launcher_id="L1", result=cue_pb2.ACK_RESULT_ACK, sequence=sent.sequence
    )
    h.apply(h.core.on_ack(stray, h.now))
    assert not h.core.ack_latency
    nack = cue_pb2.CueAck(
        cue_id=sent.cue_id, launcher_id="L1", result=cue_pb2.ACK_RESULT_NACK, sequence=sent.sequence
    )
    h.apply(h.core.on_ack(nack, h.now))
    assert list(h.core.ack_latency) == [("L1", 100_000_000)]
    assert sent.cue_id not in h.core.cues
    assert sent.cue_id not in h.core.sent_mono
