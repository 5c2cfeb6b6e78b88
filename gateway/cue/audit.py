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
file (``FILE.head``: the count, the last hash, and an HMAC-SHA256 of both
under the gateway key when the keys file has one). :func:`verify_file`
requires the head (its absence is reported as a possible cut, not OK) and,
given the key, checks its MAC: a truncation cannot forge a head that
matches a shorter log.

A flush is idempotent (issue 23 §5): each staged record is written exactly
once whatever fails where. A failed write cuts the file back to the last
good length before trying again; a failed fsync or head update is retried
on the next flush without writing the records again. Strings longer than
:data:`MAX_STRING` are cut and tagged with their length and SHA-256, so no
record carries an attacker's megabyte.

Journal first, act second (docs/architecture.md rule 5): :meth:`AuditLog.flush`
returns only after ``os.fsync``; the cue path flushes before any cue or cancel
is handed to a launcher link, and any failure to write stops cues (HOLD).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hilgw.errors import HilgwError

__all__ = [
    "GENESIS",
    "MAX_STRING",
    "AuditError",
    "AuditLog",
    "VerifyResult",
    "audit_head_key",
    "bound",
    "head_mac",
    "read_records",
    "rotated_parts",
    "verify_file",
    "verify_lines",
]

GENESIS = hashlib.sha256(b"hilgw.audit.v1 genesis").hexdigest()
_KEYS = {"n", "t_ns", "kind", "data", "prev", "hash"}
#: Longest string kept whole in a record; longer ones are cut and hashed.
MAX_STRING = 256
_MAX_ITEMS = 256  # list items / dict entries kept per container
_MAX_DEPTH = 6


def bound(value: Any, depth: int = 0) -> Any:
    """``value`` with long strings cut (their length and SHA-256 kept), long lists
    and dicts cut, and nesting limited: a record's size does not depend on input."""
    if isinstance(value, str):
        if len(value) <= MAX_STRING:
            return value
        digest = hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:32]
        return f"{value[:128]}...[{len(value)} chars, sha256:{digest}]"
    if isinstance(value, bytes | bytearray):
        return bound(bytes(value).hex(), depth)
    if depth >= _MAX_DEPTH and isinstance(value, dict | list | tuple):
        return f"[nested too deep: {type(value).__name__}]"
    if isinstance(value, dict):
        items = list(value.items())
        out = {str(k)[:64]: bound(v, depth + 1) for k, v in items[:_MAX_ITEMS]}
        if len(items) > _MAX_ITEMS:
            out["_cut"] = len(items) - _MAX_ITEMS
        return out
    if isinstance(value, list | tuple):
        kept = [bound(v, depth + 1) for v in value[:_MAX_ITEMS]]
        if len(value) > _MAX_ITEMS:
            kept.append(f"[{len(value) - _MAX_ITEMS} more]")
        return kept
    return value


def audit_head_key(gateway_secret: bytes) -> bytes:
    """The head MAC key, derived from the gateway's signing seed (never the seed itself)."""
    return hashlib.sha256(b"hilgw.audit.head.key\x00" + gateway_secret).digest()


def head_mac(count: int, head_hash: str, key: bytes) -> str:
    """HMAC-SHA256 (hex) of a head: ``b"hilgw.audit.head\0" || count || 0x00 || hash``."""
    msg = b"hilgw.audit.head\x00" + str(count).encode() + b"\x00" + head_hash.encode()
    return hmac.new(key, msg, hashlib.sha256).hexdigest()


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


def _read_head_raw(path: Path) -> dict[str, Any] | None:
    try:
        raw = json.loads(_head_path(path).read_text())
        int(raw["records"]), str(raw["hash"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return raw if isinstance(raw, dict) else None


def _read_head(path: Path) -> tuple[int, str] | None:
    raw = _read_head_raw(path)
    return None if raw is None else (int(raw["records"]), str(raw["hash"]))


def rotated_parts(path: str | Path) -> list[Path]:
    """The parts a log was rotated into (``FILE.1``, ``FILE.2``, ...), oldest first."""
    p = Path(path)
    found: list[tuple[int, Path]] = []
    with contextlib.suppress(OSError):
        for q in p.parent.iterdir():
            suffix = q.name[len(p.name) + 1 :]
            if q.name.startswith(p.name + ".") and suffix.isdigit():
                found.append((int(suffix), q))
    return [q for _, q in sorted(found)]


def _read_all(p: Path) -> tuple[bytes, bytes]:
    """(the rotated parts joined, the live file); the chain runs through both in order."""
    try:
        prior = b"".join(q.read_bytes() for q in rotated_parts(p))
        live = p.read_bytes() if p.exists() else b""
    except OSError as exc:
        raise AuditError(f"{p}: cannot read: {exc.strerror}") from None
    return prior, live


def verify_file(
    path: str | Path, *, head_key: bytes | None = None, require_head: bool = True
) -> VerifyResult:
    """Verify a log on disk (its rotated parts first, then the live file) and its head file.

    Without a head file the tail may have been cut undetectably: not OK unless
    ``require_head`` is False. With ``head_key`` the head's MAC must match
    (a head written by someone without the key is refused).
    """
    p = Path(path)
    if not p.exists() and not rotated_parts(p):
        raise AuditError(f"{p}: cannot read: no such file")
    prior, live = _read_all(p)
    lines = (prior + live).splitlines(keepends=True)
    raw = _read_head_raw(p)
    head = None if raw is None else (int(raw["records"]), str(raw["hash"]))
    res = verify_lines(lines, head)
    if not res.ok:
        return res
    if raw is None:
        if require_head and lines:
            why = f"no head file {_head_path(p).name}: a cut tail cannot be ruled out"
            return VerifyResult(False, res.records, res.records, why, res.head_hash)
        return res
    if head_key is not None:
        mac = str(raw.get("mac", ""))
        if not hmac.compare_digest(mac, head_mac(int(raw["records"]), str(raw["hash"]), head_key)):
            why = "head file MAC does not verify: head forged, or another key"
            return VerifyResult(False, res.records, res.records, why, res.head_hash)
    return res


def read_records(path: str | Path) -> Iterator[dict[str, Any]]:
    """The records of a log, its rotated parts first (unverified; call :func:`verify_file` first)."""
    p = Path(path)
    parts = rotated_parts(p)
    for q in [*parts, p] if p.exists() or not parts else parts:
        with q.open("rb") as f:
            for line in f:
                if line.endswith(b"\n"):
                    yield json.loads(line)


class AuditLog:
    """Appends records to the chain. ``path=None`` keeps it in memory (tests).

    :meth:`append` only stages a record; :meth:`flush` writes the staged ones
    and fsyncs. Records are visible in :attr:`records` once appended.
    """

    def __init__(
        self,
        path: str | Path | None,
        *,
        fsync: bool = True,
        keep: bool | None = None,
        head_key: bytes | None = None,
        max_bytes: int | None = None,
    ) -> None:
        self.path = Path(path) if path is not None else None
        #: Rotate the live file into ``FILE.<k>`` once it is this large; the chain
        #: goes on in the new file (``n`` and ``prev`` continue), so the parts
        #: joined in order verify as one log.
        self.max_bytes = max_bytes
        self.rotations = 0
        self._parts = 0
        self.fsync = fsync
        self.head_key = head_key
        #: Flushes that failed (any step); ``/metrics``.
        self.failures = 0
        self._size = 0  # bytes of whole, written records in the file
        self._unsynced = False
        self._head_stale = False
        self.count = 0
        self.head = GENESIS
        self.flushes = 0
        self._staged: list[bytes] = []
        self._keep = keep if keep is not None else path is None
        self.records: list[dict[str, Any]] = []  # only kept for in-memory logs (or keep=True)
        self.lines: list[bytes] = []
        self._fd: int | None = None

    @classmethod
    def open(
        cls,
        path: str | Path,
        *,
        fsync: bool = True,
        head_key: bytes | None = None,
        max_bytes: int | None = None,
    ) -> tuple[AuditLog, list[dict[str, Any]]]:
        """Open (or create) a log, verify it, and return it with its records.

        A torn final line (a crash mid-write; never acted upon, since acting
        waits for the fsync) is cut off and the cut is itself recorded. Any
        other fault raises :class:`AuditError`: a log that does not verify
        cannot be trusted for the replay high-water marks.
        """
        log = cls(path, fsync=fsync, head_key=head_key, max_bytes=max_bytes)
        p = Path(path)
        records: list[dict[str, Any]] = []
        torn = b""
        prior, data = _read_all(p)
        if prior or data:
            lines = data.splitlines(keepends=True)
            if lines and not lines[-1].endswith(b"\n"):
                torn = lines.pop()
            lines = prior.splitlines(keepends=True) + lines
            res = verify_lines(lines, _read_head(p))
            if not res.ok:
                raise AuditError(f"{p}: audit log does not verify: {res}; move it aside to start a new one")
            records = [json.loads(line) for line in lines]
            log.count, log.head = len(lines), res.head_hash
            log._size = len(data) - len(torn)
            log._parts = len(rotated_parts(p))
            if torn:
                with p.open("r+b") as f:
                    f.truncate(log._size)
                    os.fsync(f.fileno())
        else:
            p.parent.mkdir(parents=True, exist_ok=True)
        log._fd = os.open(p, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        if log.count and _read_head(p) != (log.count, log.head):
            log._head_stale = True  # a head update failed last time: bring it up to date
            log.flush()
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
            "data": bound(data),
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
        """Write staged records, fsync, update the head; raise :class:`AuditError` on
        failure. Idempotent: after a failure at any step, the next call finishes the
        job without writing any record twice."""
        if not self._staged and not self._unsynced and not self._head_stale:
            return
        if self._fd is not None:
            try:
                self._write_staged()
                if self._unsynced and self.fsync:
                    os.fsync(self._fd)
                self._unsynced = False
                if self._head_stale:
                    self._write_head()
                    self._head_stale = False
                if self.max_bytes is not None and self._size >= self.max_bytes:
                    self._rotate()
            except OSError as exc:
                self.failures += 1
                raise AuditError(f"{self.path}: cannot write audit log: {exc.strerror}") from None
        self._staged.clear()
        self.flushes += 1

    def _write_staged(self) -> None:
        if not self._staged:
            return
        assert self._fd is not None
        if os.fstat(self._fd).st_size != self._size:
            # A failed write left part of a batch: cut back to the last whole record
            # and write the batch again (O_APPEND then writes at the new end).
            os.ftruncate(self._fd, self._size)
        buf = b"".join(self._staged)
        view = memoryview(buf)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]
        self._size += len(buf)
        self._staged.clear()  # written: never again, whatever fails next
        self._unsynced = self._head_stale = True

    def _rotate(self) -> None:
        """Close the live file, rename it to the next part, start an empty one.
        Everything in it is written, fsynced and in the head already."""
        assert self.path is not None
        assert self._fd is not None
        part = self.path.with_name(f"{self.path.name}.{self._parts + 1}")
        os.close(self._fd)
        self._fd = None
        try:
            os.replace(self.path, part)
            self._parts += 1
            self._size = 0
            self.rotations += 1
        finally:  # renamed or not, the live path is open again (the same file if not)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        if self.fsync:  # the rename and the new file survive a crash
            dfd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)

    def _write_head(self) -> None:
        assert self.path is not None
        head = _head_path(self.path)
        tmp = head.with_name(head.name + ".tmp")
        body: dict[str, Any] = {"records": self.count, "hash": self.head}
        if self.head_key is not None:
            body["mac"] = head_mac(self.count, self.head, self.head_key)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, json.dumps(body).encode("ascii"))
            if self.fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, head)

    def close(self) -> None:
        if self._fd is not None:
            try:
                self.flush()
            finally:
                os.close(self._fd)
                self._fd = None
