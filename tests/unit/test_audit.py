"""The audit log: a hash chain that exposes any edit, deletion or reordering,
flushed (fsync) before a cue leaves."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.bus import Topic
from gateway.cue.audit import GENESIS, AuditError, AuditLog, read_records, verify_file, verify_lines
from gateway.cue.book import Now
from gateway.cue.link import Heartbeat
from gateway.cue.memory_link import FakeLauncher, MemoryLink
from gateway.cue.path import CuePath
from gateway.cue.seal import Sealed
from hilgw.v1 import cue_pb2, track_pb2
from tests.unit.cue_support import GW, KEYS, L1_SECRET, authority_command, cue_config, make_batch, make_track


def _log(path: Path, n: int = 6) -> Path:
    log, _ = AuditLog.open(path, fsync=False)
    for i in range(n):
        log.append("event", {"i": i, "text": f"record {i}"}, 1000 + i)
    log.close()
    return path


def _lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def _write(path: Path, lines: list[bytes]) -> None:
    path.write_bytes(b"".join(lines))


def test_chain_verifies_and_survives_reopen(tmp_path: Path) -> None:
    p = _log(tmp_path / "a.jsonl", 3)
    res = verify_file(p)
    assert res.ok
    assert res.records == 3
    log, hist = AuditLog.open(p, fsync=False)
    assert [r["n"] for r in hist] == [0, 1, 2]
    assert hist[0]["prev"] == GENESIS
    log.append("more", {}, 5)
    log.close()
    assert verify_file(p).records == 4
    assert (p.stat().st_mode & 0o777) == 0o600


def test_edit_is_detected(tmp_path: Path) -> None:
    p = _log(tmp_path / "a.jsonl")
    lines = _lines(p)
    lines[3] = lines[3].replace(b"record 3", b"record X")
    _write(p, lines)
    res = verify_file(p)
    assert (res.ok, res.first_bad) == (False, 3)
    assert "edited" in res.why


def test_edit_with_recomputed_hash_is_detected_by_the_next_record(tmp_path: Path) -> None:
    from gateway.cue.audit import record_hash

    p = _log(tmp_path / "a.jsonl")
    lines = _lines(p)
    rec = json.loads(lines[2])
    rec["data"]["text"] = "forged"
    rec["hash"] = record_hash(rec)
    lines[2] = json.dumps(rec, sort_keys=True, separators=(",", ":")).encode() + b"\n"
    _write(p, lines)
    res = verify_file(p)
    assert (res.ok, res.first_bad) == (False, 3)
    assert "prev hash" in res.why


def test_deletion_is_detected(tmp_path: Path) -> None:
    p = _log(tmp_path / "a.jsonl")
    lines = _lines(p)
    del lines[2]
    _write(p, lines)
    res = verify_file(p)
    assert (res.ok, res.first_bad) == (False, 2)
    assert "deleted" in res.why


def test_reordering_is_detected(tmp_path: Path) -> None:
    p = _log(tmp_path / "a.jsonl")
    lines = _lines(p)
    lines[1], lines[4] = lines[4], lines[1]
    _write(p, lines)
    res = verify_file(p)
    assert (res.ok, res.first_bad) == (False, 1)
    assert "deleted" in res.why or "reordered" in res.why


def test_swap_of_neighbours_is_reported_as_reordered(tmp_path: Path) -> None:
    p = _log(tmp_path / "a.jsonl")
    lines = _lines(p)
    lines[3], lines[2] = lines[2], lines[3]
    _write(p, lines)
    assert verify_file(p).first_bad == 2


def test_truncated_tail_is_detected(tmp_path: Path) -> None:
    p = _log(tmp_path / "a.jsonl")
    data = p.read_bytes()
    p.write_bytes(data[:-20])
    res = verify_file(p)
    assert (res.ok, res.first_bad) == (False, 5)
    assert "truncated" in res.why


def test_deleted_last_records_are_detected_by_the_head_file(tmp_path: Path) -> None:
    p = _log(tmp_path / "a.jsonl")
    _write(p, _lines(p)[:-2])
    res = verify_file(p)
    assert not res.ok
    assert "deleted tail" in res.why


@settings(deadline=None, max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_any_byte_change_is_detected(tmp_path: Path, data: st.DataObject) -> None:
    log = AuditLog(None)
    for i in range(5):
        log.append("event", {"i": i, "who": "alice", "why": "x" * i}, 10 + i)
    blob = bytearray(b"".join(log.lines))
    pos = data.draw(st.integers(0, len(blob) - 1))
    new = data.draw(st.integers(0, 255).filter(lambda b: b != blob[pos]))
    blob[pos] = new
    res = verify_lines(bytes(blob).splitlines(keepends=True))
    assert not res.ok


def test_open_refuses_a_tampered_log(tmp_path: Path) -> None:
    p = _log(tmp_path / "a.jsonl")
    lines = _lines(p)
    del lines[1]
    _write(p, lines)
    with pytest.raises(AuditError, match="does not verify"):
        AuditLog.open(p, fsync=False)


def test_open_cuts_a_torn_tail_and_records_it(tmp_path: Path) -> None:
    p = _log(tmp_path / "a.jsonl", 3)
    with p.open("ab") as f:
        f.write(b'{"n":3,"t_ns"')  # a crash mid-write
    log, hist = AuditLog.open(p, fsync=False)
    log.close()
    assert len(hist) == 3
    recs = list(read_records(p))
    assert recs[-1]["kind"] == "log_recovered"
    assert verify_file(p).ok


def test_cli_audit_verify(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from gateway.cli import main

    p = _log(tmp_path / "a.jsonl")
    assert main(["audit", "verify", str(p)]) == 0
    assert "OK" in capsys.readouterr().out
    lines = _lines(p)
    del lines[2]
    _write(p, lines)
    assert main(["audit", "verify", str(p)]) == 1
    out = capsys.readouterr()
    assert "record 2" in out.out + out.err
    assert main(["audit", "verify", str(tmp_path / "missing.jsonl")]) != 0


class _JournalCheckingLink:
    """A link that, at the moment a cue arrives, checks that it is on disk already."""

    def __init__(self, path: Path, launcher: FakeLauncher, path_obj: CuePath) -> None:
        self.path = path
        self.inner = MemoryLink(launcher, path_obj.launcher_event)
        self.seen_on_disk: list[bool] = []

    @property
    def launcher_id(self) -> str:
        return self.inner.launcher_id

    def seal_cue(self, cue: cue_pb2.EngagementCue) -> Sealed:
        return self.inner.seal_cue(cue)

    def seal_cancel(self, cancel: cue_pb2.CueCancel) -> Sealed:
        return self.inner.seal_cancel(cancel)

    async def send(self, sealed: Sealed) -> None:
        if isinstance(sealed.message, cue_pb2.EngagementCue):
            sent = [r for r in read_records(self.path) if r["kind"] == "cue_sent"]
            # On disk already, and with the very tag that goes on the wire.
            self.seen_on_disk.append(
                any(
                    r["data"]["sequence"] == sealed.message.sequence and r["data"]["mac"] == sealed.tag.hex()
                    for r in sent
                )
            )
        await self.inner.send(sealed)


async def test_cue_is_on_disk_before_it_reaches_the_launcher(tmp_path: Path) -> None:
    cfg = cue_config(tmp_path)
    tracks: Topic[track_pb2.TrackBatch] = Topic("tracks")
    path = CuePath(cfg, GW, tracks=tracks, keys=KEYS)
    clock = [Now(0, 0)]

    def now() -> Now:
        import time

        return Now(time.time_ns(), time.monotonic_ns())

    path.clock = now
    launcher = FakeLauncher("L1", {1: L1_SECRET}, lambda: now().wall_ns)
    link = _JournalCheckingLink(cfg.audit_path, launcher, path)
    path.add_link(link)
    task = asyncio.create_task(path.run())
    try:
        path.launcher_event(Heartbeat("L1"))
        path.launcher_event(Heartbeat("L2"))
        path.command("authority", authority_command("auto_cue", 1, now().wall_ns).SerializeToString())
        for _ in range(50):
            t = now().wall_ns
            tracks.publish(make_batch([make_track(1, t_ns=t)], t))
            path.launcher_event(Heartbeat("L1"))
            await asyncio.sleep(0.02)
            if launcher.accepted:
                break
        assert launcher.accepted, [r["kind"] for r in read_records(cfg.audit_path)]
        assert link.seen_on_disk
        assert all(link.seen_on_disk)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    del clock
    assert verify_file(cfg.audit_path).ok


def test_failed_audit_write_drops_to_hold_and_sends_nothing() -> None:
    from tests.unit.cue_support import Harness

    h = Harness()
    h.heartbeat()
    h.set_authority("auto_cue")
    effects = h.core.audit_failed(h.now, "disk full")
    assert h.core.authority.value == cue_pb2.AUTHORITY_HOLD
    assert all(type(e).__name__ == "Publish" for e in effects)
    h.set_authority("auto_cue")  # even a good command cannot lift it now
    h.heartbeat()
    h.tracks(make_track(1, t_ns=h.now.wall_ns))
    assert not h.sent
    assert "audit" in h.core.inhibits()
