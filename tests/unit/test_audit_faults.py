"""The audit log under write faults (issue 23 §5): a fault at any step of a flush
(write, a short write, fsync, the head file) never writes a record twice, the
chain always verifies after a restart, and a cut tail is not "OK".

The long campaign (1,000 faults) is ``benchmarks/operator/audit_faults.py``."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import random
from pathlib import Path
from typing import Any

import pytest

from gateway.cue import audit as audit_mod
from gateway.cue.audit import MAX_STRING, AuditError, AuditLog, read_records, verify_file

KEY = bytes.fromhex("5a" * 32)
STEPS = ("write", "short_write", "fsync", "head_write", "head_replace")


class FaultyOs:
    """``os`` for gateway.cue.audit with one fault armed at the n-th call of a step."""

    def __init__(self, step: str, after: int) -> None:
        self.step, self.after, self.fired, self.shorted = step, after, False, False

    def _maybe(self, step: str) -> bool:
        if self.fired or step != self.step:
            return False
        if self.after > 0:
            self.after -= 1
            return False
        self.fired = True
        return True

    def write(self, fd: int, data: Any) -> int:
        if fd in _LOG_FDS:
            if self.step == "short_write":
                if self._maybe("short_write"):  # part of the batch, then the next call fails
                    return os.write(fd, bytes(data)[: max(1, len(data) // 3)])
                if self.fired and not self.shorted:
                    self.shorted = True
                    raise OSError(errno.ENOSPC, "No space left on device")
            elif self._maybe("write"):
                raise OSError(errno.ENOSPC, "No space left on device")
        elif self._maybe("head_write"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return os.write(fd, data)

    def fsync(self, fd: int) -> None:
        if fd in _LOG_FDS and self._maybe("fsync"):
            raise OSError(errno.EIO, "Input/output error")
        os.fsync(fd)

    def replace(self, a: Any, b: Any) -> None:
        if self._maybe("head_replace"):
            raise OSError(errno.EROFS, "Read-only file system")
        os.replace(a, b)

    def __getattr__(self, name: str) -> Any:
        return getattr(os, name)


_LOG_FDS: set[int] = set()


def _campaign(tmp: Path, rng: random.Random, monkeypatch: pytest.MonkeyPatch) -> bool:
    p = tmp / "audit.jsonl"
    log, hist = AuditLog.open(p, fsync=True, head_key=KEY)
    start = len(hist)
    assert log._fd is not None
    _LOG_FDS.clear()
    _LOG_FDS.add(log._fd)
    faulty = FaultyOs(rng.choice(STEPS), rng.randint(0, 3))
    monkeypatch.setattr(audit_mod, "os", faulty)
    appended = 0
    try:
        for _ in range(rng.randint(1, 8)):
            for _ in range(rng.randint(1, 4)):
                log.append("event", {"i": appended, "pad": "x" * rng.randint(0, 300)}, 1)
                appended += 1
            try:
                log.flush()
            except AuditError:
                if rng.random() < 0.5:
                    break  # the gateway dies right after the fault
    finally:
        monkeypatch.setattr(audit_mod, "os", os)
    if rng.random() < 0.5:
        with contextlib.suppress(AuditError):
            log.flush()  # a later flush finishes the job (no record twice)
    os.close(log._fd)  # no close(): as after SIGKILL
    log._fd = None
    # Restart: the log opens (the cue path starts) and the chain verifies.
    log2, hist2 = AuditLog.open(p, fsync=False, head_key=KEY)
    log2.close()
    res = verify_file(p, head_key=KEY)
    assert res.ok, (faulty.step, res)
    ns = [r["n"] for r in read_records(p)]
    assert ns == list(range(len(ns)))  # nothing twice, nothing missing
    events = [r["data"]["i"] for r in hist2[start:] if r["kind"] == "event"]
    assert events == list(range(len(events)))  # each record once, in order
    assert len(events) <= appended
    return faulty.fired


def test_faults_at_every_flush_step_keep_the_chain(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(23)
    fired = 0
    for i in range(60):
        d = tmp_path / str(i % 6)  # several campaigns on the same growing log
        d.mkdir(exist_ok=True)
        fired += _campaign(d, rng, monkeypatch)
    assert fired >= 30  # most campaigns did meet their fault


def test_a_failed_fsync_does_not_write_the_records_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    p = tmp_path / "a.jsonl"
    log, _ = AuditLog.open(p, fsync=True)
    assert log._fd is not None
    _LOG_FDS.clear()
    _LOG_FDS.add(log._fd)
    log.append("one", {}, 1)
    monkeypatch.setattr(audit_mod, "os", FaultyOs("fsync", 0))
    with pytest.raises(AuditError, match="Input/output"):
        log.flush()
    monkeypatch.setattr(audit_mod, "os", os)
    log.append("two", {}, 2)
    log.flush()  # before the fix: "one" was written a second time and the chain broke
    log.close()
    assert [r["kind"] for r in read_records(p)] == ["one", "two"]
    assert verify_file(p).ok


def test_long_strings_are_cut_and_hashed(tmp_path: Path) -> None:
    log = AuditLog(None)
    rec = log.append("command_rejected", {"reason": "x" * 1_000_000, "list": list(range(10_000))}, 1)
    line = log.lines[-1]
    assert len(line) < 8_000
    assert "1000000 chars, sha256:" in rec["data"]["reason"]
    assert len(rec["data"]["reason"]) < MAX_STRING + 100


def test_a_cut_tail_without_head_is_not_ok(tmp_path: Path) -> None:
    p = tmp_path / "a.jsonl"
    log, _ = AuditLog.open(p, fsync=False, head_key=KEY)
    for i in range(6):
        log.append("e", {"i": i}, i)
    log.close()
    assert verify_file(p, head_key=KEY).ok
    p.write_bytes(b"".join(p.read_bytes().splitlines(keepends=True)[:-2]))
    head = p.with_name(p.name + ".head")
    saved = head.read_text()
    head.unlink()  # the head deleted with the tail
    res = verify_file(p)
    assert not res.ok
    assert "no head file" in res.why
    # A head rewritten to match the shorter log, without the key, is refused.
    recs = list(read_records(p))
    head.write_text(json.dumps({"records": len(recs), "hash": recs[-1]["hash"], "mac": "00" * 32}))
    assert verify_file(p).ok  # chain and count agree: only the MAC can tell ...
    assert not verify_file(p, head_key=KEY).ok  # ... and it does
    head.write_text(saved)
    assert "deleted tail" in verify_file(p, head_key=KEY).why


def test_rotation_keeps_one_chain_across_files(tmp_path: Path) -> None:
    p = tmp_path / "audit.jsonl"
    log, _ = AuditLog.open(p, fsync=False, head_key=KEY, max_bytes=4096)
    for i in range(200):
        log.append("event", {"i": i, "pad": "y" * 40}, i)
        log.flush()
    log.close()
    parts = audit_mod.rotated_parts(p)
    assert len(parts) >= 3
    assert all(q.stat().st_size >= 4096 for q in parts)
    assert verify_file(p, head_key=KEY).ok
    log2, hist = AuditLog.open(p, fsync=False, head_key=KEY, max_bytes=4096)  # a restart reads every part
    log2.close()
    assert [r["data"]["i"] for r in hist] == list(range(200))
    assert [r["n"] for r in read_records(p)] == list(range(200))
    # A part removed from the middle breaks the chain; the last part cut is caught by the head.
    parts[1].rename(tmp_path / "elsewhere")
    assert not verify_file(p, head_key=KEY).ok
