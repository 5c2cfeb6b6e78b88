"""The operator path under attack (issue 23 §1-2): pre-checks before the disk, the
priority lane, the local hold, contained faults, cancels of a previous run's cues."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.bus import Topic
from gateway.cue.audit import AuditLog, read_records, verify_file
from gateway.cue.book import Now, SendCancel
from gateway.cue.core import CueCore
from gateway.cue.intake import Intake
from gateway.cue.link import Heartbeat
from gateway.cue.local_hold import HoldLatch, request_local_hold
from gateway.cue.memory_link import FakeLauncher, MemoryLink
from gateway.cue.path import CuePath
from gateway.sections.cue import CueConfig
from hilgw.v1 import cue_pb2, track_pb2
from tests.unit.cue_support import (
    GW,
    KEYS,
    L1_SECRET,
    M0,
    OP2_SECRET,
    T0,
    Harness,
    authority_command,
    cue_command,
    cue_config,
    make_batch,
    make_track,
)
from tests.waiting import eventually

HOLD, APPROVAL, AUTO = cue_pb2.AUTHORITY_HOLD, cue_pb2.AUTHORITY_CUE_ON_APPROVAL, cue_pb2.AUTHORITY_AUTO_CUE
Body = Callable[[CuePath, FakeLauncher, Topic[track_pb2.TrackBatch]], Awaitable[None]]


async def _run(cfg: CueConfig, body: Body) -> None:
    tracks: Topic[track_pb2.TrackBatch] = Topic("tracks")
    path = CuePath(cfg, GW, tracks=tracks, keys=KEYS, fsync=False)
    fake = FakeLauncher("L1", {1: L1_SECRET}, time.time_ns)
    path.add_link(MemoryLink(fake, path.launcher_event))
    task = asyncio.create_task(path.run())
    try:
        await eventually(lambda: path.core is not None and path.running)
        await body(path, fake, tracks)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def _live_cue(path: CuePath, fake: FakeLauncher, tracks: Topic[track_pb2.TrackBatch]) -> None:
    """AUTO_CUE and one acked cue on L1."""
    path.command("authority", authority_command("auto_cue", 1, time.time_ns()).SerializeToString())
    for _ in range(200):
        t = time.time_ns()
        tracks.publish(make_batch([make_track(1, t_ns=t)], t))
        path.launcher_event(Heartbeat("L1"))
        await asyncio.sleep(0.01)
        if fake.accepted and path.core is not None and path.core.open_cues():
            return
    raise AssertionError("no cue went out")


def test_unknown_cue_action_is_a_rejection_not_a_crash() -> None:
    h = Harness()
    raw = bytes.fromhex("08631001")  # action 99 (not in cue.proto), cue_id 1, unsigned
    h.apply(h.core.on_cue_command(raw, h.now))  # raised ValueError in CueAction.Name before
    rec = h.audit.records[-1]
    assert rec["kind"] == "command_rejected"
    assert rec["data"]["reason"] == "unsigned"
    assert rec["data"]["action"] == "UNKNOWN(99)"
    signed = cue_command(True, 1, 5, T0)
    signed.action = 99  # type: ignore[assignment]  # a wire value nobody defined
    from gateway.cue.signing import sign

    sign(signed, "op-alice", bytes.fromhex("11" * 32))
    h.apply(h.core.on_cue_command(signed.SerializeToString(), h.now))
    assert h.audit.records[-1]["data"]["reason"] == "invalid"
    results = [p.message for p in h.published if p.kind == "result"]
    assert [r.reason for r in results[-2:]] == ["unsigned", "invalid"]  # both answered


async def test_flood_of_invalid_commands_is_counted_not_journaled(tmp_path: Path) -> None:
    async def body(path: CuePath, fake: FakeLauncher, tracks: Topic[track_pb2.TrackBatch]) -> None:
        assert path.core is not None
        before = path.core.audit.count
        rng = random.Random(7)
        for i in range(20_000):
            junk = bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 12)))
            path.command("authority" if i % 2 else "cue", junk if i % 3 else bytes.fromhex("08631001"))
        path.command("cue", b"\x00" * 100_000)
        await asyncio.sleep(1.2)  # one summary period
        await eventually(lambda: sum(path.intake.rejected.values()) == 20_001)
        assert path.intake.received == 20_001
        assert path.intake.rejected["too_large"] == 1
        recs = list(read_records(tmp_path / "audit.jsonl"))[before:]
        assert not [r for r in recs if r["kind"] == "command_rejected"]  # none one by one
        summaries = [r for r in recs if r["kind"] == "commands_rejected"]
        assert 1 <= len(summaries) <= 3
        assert sum(sum(r["data"]["counts"].values()) for r in summaries) == 20_001
        assert all(len(r["data"]["samples"]) <= 4 for r in summaries)
        assert len(recs) < 10
        # Rejections are answered, at a bounded rate.
        assert 0 < path.unanswered < 20_001

    await _run(cue_config(tmp_path), body)


async def test_a_lowering_command_overtakes_the_queue(tmp_path: Path) -> None:
    async def body(path: CuePath, fake: FakeLauncher, tracks: Topic[track_pb2.TrackBatch]) -> None:
        assert path.core is not None
        path.command("authority", authority_command("auto_cue", 1, time.time_ns()).SerializeToString())
        await eventually(lambda: path.core is not None and path.core.authority.value == AUTO)
        # 300 valid (signed, fresh) cue commands queue up, each journaled on its own ...
        for seq in range(2, 302):
            path.command("cue", cue_command(False, 10_000 + seq, seq, time.time_ns()).SerializeToString())
        # ... and a HOLD after them is taken first.
        hold = authority_command(
            "hold", 1, time.time_ns(), key_id="op-any", secret=OP2_SECRET, operator="bob"
        )
        path.command("authority", hold.SerializeToString())
        await eventually(lambda: not path._inbox and not path._priority)
        kinds = [r["kind"] for r in read_records(tmp_path / "audit.jsonl")]
        hold_at = max(i for i, k in enumerate(kinds) if k == "authority_changed")
        after = kinds[hold_at:].count("reject_ignored")
        assert after >= 250, after  # at most the few being processed when it arrived came first
        assert path.core.authority.value == HOLD

    await _run(cue_config(tmp_path), body)


async def test_a_handler_fault_holds_cancels_and_is_audited(tmp_path: Path) -> None:
    async def body(path: CuePath, fake: FakeLauncher, tracks: Topic[track_pb2.TrackBatch]) -> None:
        await _live_cue(path, fake, tracks)
        core = path.core
        assert core is not None
        live = [c.cue_id for c in core.open_cues()]

        def boom(*_: Any) -> Any:
            raise RuntimeError("injected")

        core.on_tracks = boom  # type: ignore[method-assign]
        tracks.publish(make_batch([make_track(1, t_ns=time.time_ns())], time.time_ns()))
        await eventually(lambda: path.faults == 1 and bool(fake.cancels))
        assert core.authority.value == HOLD
        fault = [r for r in read_records(tmp_path / "audit.jsonl") if r["kind"] == "fault"][-1]
        assert fault["data"]["authority"] == "HOLD"
        assert fault["data"]["cancelled_live"] == live
        assert "injected" in fault["data"]["error"]
        # The path goes on: a command is still answered.
        path.command("authority", authority_command("hold", 50, time.time_ns()).SerializeToString())
        await eventually(lambda: path.intake.passed >= 2 and not path._priority)
        assert path.running

    await _run(cue_config(tmp_path), body)
    assert verify_file(tmp_path / "audit.jsonl").ok


def test_restart_cancels_cues_the_journal_shows_live(tmp_path: Path) -> None:
    cfg = cue_config(tmp_path)
    audit, hist = AuditLog.open(cfg.audit_path, fsync=False)
    h = Harness(config=cfg, audit=audit, history=hist)
    h.heartbeat()
    h.apply(
        h.core.on_authority_command(
            authority_command("auto_cue", 1, h.now.wall_ns).SerializeToString(), h.now
        )
    )
    h.apply(
        h.core.on_tracks(
            make_batch([make_track(1, t_ns=h.now.wall_ns), make_track(2, t_ns=h.now.wall_ns)], h.now.wall_ns),
            h.now,
        )
    )
    live = sorted(c.cue_id for c in h.core.open_cues())
    assert live
    assert all(c.status == cue_pb2.CUE_STATUS_ACKED for c in h.core.open_cues())
    audit.close()  # SIGKILL-like: no shutdown code ran (nothing else is written)
    # Restart 1 s later: HOLD, and a cancel for each live cue.
    now = Now(h.now.wall_ns + 1_000_000_000, M0 + 10**12)
    audit2, hist2 = AuditLog.open(cfg.audit_path, fsync=False)
    core = CueCore(cfg, KEYS, GW, audit2, now, hist2, sealers=h.sealers)
    effects = core.tick(now)
    cancels = [e for e in effects if isinstance(e, SendCancel)]
    assert sorted(c.cancel.cue_id for c in cancels) == live
    assert core.authority.value == HOLD
    for c in cancels:  # the launcher takes them (fresh sequence, right key)
        h.launchers["L1"].receive_cancel(c.sealed)
    assert {c.cue_id for c in h.launchers["L1"].cancels} >= set(live)
    # The launcher never answered: a second restart cancels again; once past validity, not.
    audit2.close()
    audit3, hist3 = AuditLog.open(cfg.audit_path, fsync=False)
    again = CueCore(cfg, KEYS, GW, audit3, now.plus(0.1), hist3, sealers=h.sealers).tick(now.plus(0.1))
    assert sorted(e.cancel.cue_id for e in again if hasattr(e, "cancel")) == live
    audit3.close()
    late = now.plus(cfg.cue_validity_s + 1)
    audit4, hist4 = AuditLog.open(cfg.audit_path, fsync=False)
    late_core = CueCore(cfg, KEYS, GW, audit4, late, hist4, sealers=h.sealers)
    assert not [e for e in late_core.tick(late) if hasattr(e, "cancel")]
    audit4.close()


async def test_local_hold_over_the_socket_and_sigusr1(tmp_path: Path) -> None:
    sock = tmp_path / "hold.sock"
    cfg = cue_config(tmp_path, local_hold_socket=str(sock))

    async def body(path: CuePath, fake: FakeLauncher, tracks: Topic[track_pb2.TrackBatch]) -> None:
        assert stat.S_IMODE(sock.stat().st_mode) == 0o600
        await _live_cue(path, fake, tracks)
        answer = await request_local_hold(sock, 2.0)
        assert answer.startswith("OK HOLD"), answer
        assert path.core is not None
        assert path.core.authority.value == HOLD
        await eventually(lambda: bool(fake.cancels))
        recs = list(read_records(tmp_path / "audit.jsonl"))
        changed = [r for r in recs if r["kind"] == "authority_changed"][-1]
        assert changed["data"]["by"] == "local:socket"
        assert changed["data"]["new"] == "HOLD"
        path.command("authority", authority_command("auto_cue", 2, time.time_ns()).SerializeToString())
        await eventually(lambda: path.core is not None and path.core.authority.value == AUTO)
        os.kill(os.getpid(), signal.SIGUSR1)
        await eventually(lambda: path.core is not None and path.core.authority.value == HOLD)
        # The CLI's local switch: hilgw authority hold --local.
        from gateway.cli import main

        cfg_file = tmp_path / "gw.toml"
        cfg_file.write_text(
            f'gateway_id = "{GW}"\n[mqtt]\nenabled = false\n[cue]\nkeys_file = "{tmp_path / "k.toml"}"\n'
            f'audit_path = "{tmp_path / "audit.jsonl"}"\nlocal_hold_socket = "{sock}"\n'
        )
        rc = await asyncio.to_thread(main, ["authority", "hold", "--local", "--config", str(cfg_file)])
        assert rc == 0
        by = [
            r["data"]["by"]
            for r in read_records(tmp_path / "audit.jsonl")
            if r["kind"] == "authority_changed"
        ]
        assert by[-1] == "local:signal"

    await _run(cfg, body)
    assert not sock.exists()


_HOLD_CLIENT = """
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(15)
s.connect(sys.argv[1])
s.sendall(b"HOLD\\n")
print(s.makefile().readline().strip())
"""


async def test_the_local_hold_latches_while_the_event_loop_and_the_gil_are_held(tmp_path: Path) -> None:
    """Issue 23: the loop's thread spins (a flood being parsed) and, with a huge
    switch interval, never lets another thread of this process have the GIL; the
    local switch must still latch (no cue leaves) before the loop runs again."""
    sock = tmp_path / "hold.sock"
    cfg = cue_config(tmp_path, local_hold_socket=str(sock))

    async def body(path: CuePath, fake: FakeLauncher, tracks: Topic[track_pb2.TrackBatch]) -> None:
        await _live_cue(path, fake, tracks)
        core = path.core
        assert core is not None
        cue = core.open_cues()[0]
        assert core._allowed(cue)
        client = subprocess.Popen(  # noqa: ASYNC220  # started before the loop is blocked on purpose
            [sys.executable, "-c", _HOLD_CLIENT, str(sock)], stdout=subprocess.PIPE, text=True
        )
        old = sys.getswitchinterval()
        sys.setswitchinterval(1000.0)
        try:
            deadline = time.monotonic() + 20  # bounded; passes as soon as the latch is seen
            while core._allowed(cue) and time.monotonic() < deadline:
                pass  # the loop is blocked: no await, the GIL never handed on
            latched = not core._allowed(cue)  # the gate every cue passes (CueCore._allowed)
            authority_then = core.authority.value
        finally:
            sys.setswitchinterval(old)
        assert latched, "the local HOLD did not latch while the loop held the GIL"
        assert authority_then == AUTO  # not journaled yet: the loop had not run
        out, _ = await asyncio.to_thread(client.communicate, None, 15)
        assert out.startswith("OK HOLD"), out
        assert core.authority.value == HOLD
        await eventually(lambda: bool(fake.cancels))
        accepted = len(fake.accepted)
        for _ in range(20):  # and none after the HOLD is journaled either
            t = time.time_ns()
            tracks.publish(make_batch([make_track(3, t_ns=t)], t))
            path.launcher_event(Heartbeat("L1"))
            await asyncio.sleep(0.01)
        assert len(fake.accepted) == accepted
        assert not core._allowed(cue)
        by = [
            r["data"]["by"]
            for r in read_records(tmp_path / "audit.jsonl")
            if r["kind"] == "authority_changed"
        ]
        assert by[-1] == "local:socket"
        assert path.health_reasons() == []
        assert path.local_hold is not None
        assert path.local_hold._proc is not None
        path.local_hold._proc.kill()  # the switch's process dies: /healthz must say so
        await eventually(lambda: path.health_reasons() != [])
        assert "local hold" in path.health_reasons()[0]

    await _run(cfg, body)


_VALID = [
    authority_command("auto_cue", 10, T0).SerializeToString(),
    cue_command(True, 3, 11, T0).SerializeToString(),
    bytes.fromhex("08631001"),
]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["authority", "cue", "other"]),
            st.one_of(
                st.binary(max_size=64),
                st.tuples(st.sampled_from(_VALID), st.integers(0, 2000), st.integers(0, 255)).map(
                    lambda t: (
                        t[0][: t[1] % (len(t[0]) + 1)] + bytes([t[2]]) + t[0][t[1] % (len(t[0]) + 1) + 1 :]
                    )
                ),
            ),
        ),
        max_size=20,
    )
)
def test_mutated_commands_are_counted_never_raise(msgs: list[tuple[str, bytes]]) -> None:
    h = Harness()
    intake = Intake()
    for kind, payload in msgs:
        chk = intake.check(kind, payload, h.core.verifier, h.now.wall_ns, h.core.authority.value)
        if not chk.reason:  # what passes goes to the core, which must not raise either
            fn = h.core.on_authority_command if kind == "authority" else h.core.on_cue_command
            h.apply(fn(payload, h.now))
    assert intake.received == len(msgs) == intake.passed + sum(intake.rejected.values())


def test_a_latched_core_sends_no_cue_until_the_hold_is_processed() -> None:
    h = Harness()
    h.heartbeat()
    h.set_authority("auto_cue")
    h.core.latched = True  # a HOLD arrived (local switch or verified command), not yet journaled
    h.tracks(make_track(1, t_ns=h.now.wall_ns))
    assert not h.sent
    h.core.latched = False
    h.tracks(make_track(1, t_ns=h.now.wall_ns))
    assert h.sent


def test_the_hold_process_latch_forbids_cues_until_its_own_hold_is_journaled() -> None:
    import ctypes
    import mmap

    latch = HoldLatch()
    proc_view = mmap.mmap(latch.fd, 16)  # what gateway.cue.hold_proc maps
    counter = ctypes.c_uint64.from_buffer(proc_view, 0)
    h = Harness()
    h.core.hold_latch = latch
    h.heartbeat()
    h.set_authority("auto_cue")
    counter.value += 1  # the hold process latched HOLD 1
    h.tracks(make_track(1, t_ns=h.now.wall_ns))
    assert not h.sent
    counter.value += 1  # HOLD 2 latched while HOLD 1 is being journaled
    latch.ack(1)
    h.tracks(make_track(1, t_ns=h.now.wall_ns))
    assert not h.sent  # HOLD 2 is not journaled yet
    latch.ack(2)
    h.tracks(make_track(1, t_ns=h.now.wall_ns))
    assert h.sent
    del counter
    proc_view.close()
    latch.close_fd()


def test_an_approval_binds_track_state_and_expiry() -> None:
    from gateway.cue.signing import sign

    h = Harness()
    h.heartbeat()
    h.set_authority("cue_on_approval")
    h.tracks(make_track(1, t_ns=h.now.wall_ns))
    (cue,) = h.core.open_cues()
    reasons = []
    for change in ("digest", "track", "expired", "unbound"):
        h.seq += 1
        cmd = cue_command(True, cue.cue_id, h.seq, h.now.wall_ns, bind=h.core)
        if change == "digest":
            cmd.state_digest = bytes(32)
        elif change == "track":
            cmd.track_id += 1
        elif change == "expired":
            cmd.expires_ns = h.now.wall_ns - 1
        else:
            cmd.ClearField("track_id")
            cmd.ClearField("state_digest")
            cmd.ClearField("expires_ns")
        sign(cmd, "op-alice", bytes.fromhex("11" * 32))
        h.apply(h.core.on_cue_command(cmd.SerializeToString(), h.now))
        reasons.append([p.message for p in h.published if p.kind == "result"][-1].reason)
    assert reasons == ["approval_mismatch", "approval_mismatch", "approval_expired", "approval_expired"]
    assert not h.sent
    h.approve(cue.cue_id)  # bound to what the gateway published: sent
    assert h.sent


def test_doctor_warns_when_the_gateway_cannot_sign(tmp_path: Path) -> None:
    from gateway.config import parse_config
    from gateway.doctor import Result, check_keys_file

    keys = tmp_path / "keys.toml"
    base = f'[operator.op-alice]\nsecret = "{"11" * 32}"\n'
    cfg = parse_config(
        {"gateway_id": GW, "cue": {"keys_file": str(keys), "audit_path": str(tmp_path / "a.jsonl")}}
    )
    for text, want in (
        (base, Result.WARN),
        (base + f'[gateway.gw-1]\nsecret = "{"33" * 32}"\n', Result.PASS),
    ):
        keys.write_text(text)
        os.chmod(keys, 0o600)
        assert check_keys_file(cfg).result is want


def test_the_hold_process_says_when_it_may_not_raise_its_priority(monkeypatch: pytest.MonkeyPatch) -> None:
    from gateway.cue import hold_proc

    def refuse(*_: object) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "sched_setscheduler", refuse)
    said = hold_proc.raise_priority()
    assert said.startswith("SCHED_OTHER unchanged"), said  # what the gateway logs once, as a warning
    calls: list[tuple[object, ...]] = []
    monkeypatch.setattr(os, "sched_setscheduler", lambda *a: calls.append(a))
    assert hold_proc.raise_priority() == f"SCHED_FIFO {hold_proc.RT_PRIORITY}"
    assert calls[0][:2] == (0, os.SCHED_FIFO)
