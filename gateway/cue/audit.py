"""The cue path's audit trail: a hash-chained JSON Lines log, fsynced before acting.

One record per line (docs/cue-path.md §5)::

    {"n": 7, "t_ns": 1718000000000000000, "kind": "cue_sent", "data": {...},
     "prev": "<hash of record 6>", "hash": "<hash of this record>"}

``hash = SHA-256(canonical JSON of the record without "hash")`` where
canonical JSON is ``json.dumps(sort_keys=True, separators=(",", ":"),
ensure_ascii=True)``; record 0 has ``prev = GENESIS`` (SHA-256 of
``b"hilgw.audit.v1 genesis"``). An edit changes a record's hash; a deletion
or reordering breaks ``n`` and ``prev``. A hash chain alone cannot show that
the *last* records were cut off, so every flush also rewrites a small head
file (``FILE.head``: the count and the last hash) that :func:`verify_file`
checks when present; the same head is published so it can be anchored
outside the machine.

Journal first, act second (docs/architecture.md rule 5): :meth:`AuditLog.flush`
returns only after ``os.fsync``; the cue path flushes before any cue or cancel
is handed to a launcher link, and any failure to write stops cues (HOLD).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hilgw.errors import HilgwError

__all__ = ["GENESIS", "AuditError", "AuditLog", "VerifyResult", "read_records", "verify_file", "verify_lines"]

GENESIS = hashlib.sha256(b"hilgw.audit.v1 genesis").hexdigest()
_KEYS = {"n", "t_ns", "kind", "data", "prev", "hash"}


class AuditError(HilgwError):
    """The audit log cannot be written, or what is on disk does not verify."""


def _canonical(rec: dict[str, Any]) -> bytes:
    return json.dumps(rec, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def record_hash(rec: dict[str, Any]) -> str:
    """SHA-256 (hex) of the record without its own ``hash`` field."""
    return hashlib.sha256(_canonical({k: v for k, v in rec.items() if k != "hash"})).hexdigest()


@dataclass(frozen=True, slots=True)
class VerifyResult:
    ok: bool
    records: int  # records that verified (the good prefix)
    first_bad: int | None = None  # 0-based line index of the first bad record
    why: str = ""
    head_hash: str = GENESIS

    def __str__(self) -> str:
        if self.ok:
            return f"OK: {self.records} records, head {self.head_hash[:16]}"
        return f"BAD at record {self.first_bad}: {self.why} ({self.records} good records before it)"


def verify_lines(lines: list[bytes], head: tuple[int, str] | None = None) -> VerifyResult:
    """Check a chain given as raw lines (each with its trailing newline)."""
    prev = GENESIS
    for i, line in enumerate(lines):
        if not line.endswith(b"\n"):
            return VerifyResult(False, i, i, "truncated tail: last record is incomplete", prev)
        try:
            rec = json.loads(line)
        except ValueError:
            return VerifyResult(False, i, i, "edited: not a JSON record", prev)
        if not isinstance(rec, dict) or set(rec) != _KEYS:
            return VerifyResult(False, i, i, "edited: fields missing or added", prev)
        if line != _canonical(rec) + b"\n":
            return VerifyResult(False, i, i, "edited: record is not in canonical form", prev)
        if rec["hash"] != record_hash(rec):
            return VerifyResult(False, i, i, "edited: hash does not match content", prev)
        n = rec["n"]
        if n != i:
            if isinstance(n, int) and n > i:
                why = f"deleted: record {i} expected, found {n}"
            else:
                why = f"reordered: record {i} expected, found {n}"
            return VerifyResult(False, i, i, why, prev)
        if rec["prev"] != prev:
            return VerifyResult(False, i, i, "deleted, reordered or replaced: prev hash does not chain", prev)
        prev = rec["hash"]
    if head is not None:
        count, head_hash = head
        if count > len(lines):
            why = f"deleted tail: head file says {count} records, log has {len(lines)}"
            return VerifyResult(False, len(lines), len(lines), why, prev)
        if count == len(lines) and head_hash != prev:
            return VerifyResult(
                False, count - 1, max(count - 1, 0), "head hash does not match last record", prev
            )
    return VerifyResult(True, len(lines), None, "", prev)


def _head_path(path: Path) -> Path:
    return path.with_name(path.name + ".head")


def _read_head(path: Path) -> tuple[int, str] | None:
    try:
        raw = json.loads(_head_path(path).read_text())
        return int(raw["records"]), str(raw["hash"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def verify_file(path: str | Path) -> VerifyResult:
    """Verify a log on disk (and its head file, when there is one)."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise AuditError(f"{p}: cannot read: {exc.strerror}") from None
    return verify_lines(data.splitlines(keepends=True), _read_head(p))


def read_records(path: str | Path) -> Iterator[dict[str, Any]]:
    """The records of a log (unverified; call :func:`verify_file` first)."""
    with Path(path).open("rb") as f:
        for line in f:
            if line.endswith(b"\n"):
                yield json.loads(line)


class AuditLog:
    """Appends records to the chain. ``path=None`` keeps it in memory (tests).

    :meth:`append` only stages a record; :meth:`flush` writes the staged ones
    and fsyncs. Records are visible in :attr:`records` once appended.
    """

    def __init__(self, path: str | Path | None, *, fsync: bool = True, keep: bool | None = None) -> None:
        self.path = Path(path) if path is not None else None
        self.fsync = fsync
        self.count = 0
        self.head = GENESIS
        self.flushes = 0
        self._staged: list[bytes] = []
        self._keep = keep if keep is not None else path is None
        self.records: list[dict[str, Any]] = []  # only kept for in-memory logs (or keep=True)
        self.lines: list[bytes] = []
        self._fd: int | None = None

    @classmethod
    def open(cls, path: str | Path, *, fsync: bool = True) -> tuple[AuditLog, list[dict[str, Any]]]:
        """Open (or create) a log, verify it, and return it with its records.

        A torn final line (a crash mid-write; never acted upon, since acting
        waits for the fsync) is cut off and the cut is itself recorded. Any
        other fault raises :class:`AuditError`: a log that does not verify
        cannot be trusted for the replay high-water marks.
        """
        log = cls(path, fsync=fsync)
        p = Path(path)
        records: list[dict[str, Any]] = []
        torn = b""
        if p.exists():
            data = p.read_bytes()
            lines = data.splitlines(keepends=True)
            if lines and not lines[-1].endswith(b"\n"):
                torn = lines.pop()
            res = verify_lines(lines, _read_head(p))
            if not res.ok:
                raise AuditError(f"{p}: audit log does not verify: {res}; move it aside to start a new one")
            records = [json.loads(line) for line in lines]
            log.count, log.head = len(lines), res.head_hash
            if torn:
                with p.open("r+b") as f:
                    f.truncate(len(data) - len(torn))
                    os.fsync(f.fileno())
        else:
            p.parent.mkdir(parents=True, exist_ok=True)
        log._fd = os.open(p, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        if torn:
            log.append("log_recovered", {"cut_bytes": len(torn)}, 0)
            log.flush()
        return log, records

    def append(self, kind: str, data: dict[str, Any], t_ns: int) -> dict[str, Any]:
        """Stage one record (chained onto the last one); returns it."""
        rec: dict[str, Any] = {
            "n": self.count,
            "t_ns": int(t_ns),
            "kind": kind,
            "data": data,
            "prev": self.head,
        }
        rec["hash"] = record_hash(rec)
        self.count += 1
        self.head = rec["hash"]
        line = _canonical(rec) + b"\n"
        self._staged.append(line)
        if self._keep:
            self.records.append(rec)
            self.lines.append(line)
        return rec

    @property
    def pending(self) -> int:
        return len(self._staged)

    def flush(self) -> None:
        """Write staged records and fsync; raise :class:`AuditError` on failure."""
        if not self._staged:
            return
        if self._fd is not None:
            buf = b"".join(self._staged)
            try:
                view = memoryview(buf)
                while view:
                    n = os.write(self._fd, view)
                    view = view[n:]
                if self.fsync:
                    os.fsync(self._fd)
                self._write_head()
            except OSError as exc:
                raise AuditError(f"{self.path}: cannot write audit log: {exc.strerror}") from None
        self._staged.clear()
        self.flushes += 1

    def _write_head(self) -> None:
        assert self.path is not None
        head = _head_path(self.path)
        tmp = head.with_name(head.name + ".tmp")
        tmp.write_text(json.dumps({"records": self.count, "hash": self.head}))
        os.replace(tmp, head)

    def close(self) -> None:
        if self._fd is not None:
            try:
                self.flush()
            finally:
                os.close(self._fd)
                self._fd = None
