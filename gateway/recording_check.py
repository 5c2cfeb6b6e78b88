"""Integrity of recorded MCAP parts, and recovery of a part a crash left open.

``hilgw replay`` reads every part once from start to end before it replays
anything (:func:`check_part`): each record is parsed, each chunk is
decompressed and its CRC checked, and the data-section CRC at the end
(MCAP spec, "Chunk" ``uncompressed_crc`` and "Data End" ``data_section_crc``).
A damaged part is refused with what is wrong and where (file, byte offset,
record kind). A part without a footer is what a recorder leaves when it is
killed (SIGKILL, power loss, a full disk): everything before the open chunk
is intact, and ``hilgw replay --recover`` (:func:`recover_part`) copies the
good records into a new, complete part beside it.

The mcap library does the parsing and the CRCs (``StreamReader``,
``breakup_chunk``); what is written here is the walk that keeps the byte
offset of each record (the library's readers do not report it) and the copy.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from mcap.records import (
    Channel,
    Chunk,
    ChunkIndex,
    DataEnd,
    Footer,
    Header,
    McapRecord,
    Message,
    Metadata,
    Schema,
)
from mcap.stream_reader import StreamReader, breakup_chunk
from mcap.writer import CompressionType, Writer

from hilgw.errors import ConfigError, RecordingError

__all__ = ["PartCheck", "RecordingError", "check_part", "recover_part", "recovered_path"]

#: The recorder's chunks are 256 KiB before compression (gateway/recording.py);
#: a record claiming more than this is a damaged length field, not data.
MAX_RECORD_BYTES = 64 * 2**20


@dataclass
class PartCheck:
    """What one read of a part found."""

    path: Path
    records: int = 0
    messages: int = 0
    #: The part ends with its footer (the recorder closed it).
    complete: bool = False
    #: None, or what is wrong at ``offset``.
    error: str | None = None
    offset: int | None = None
    #: The file ends inside the record at ``offset`` (a crash, not a flipped bit).
    truncated: bool = False
    #: Byte offset just past the last intact top-level record.
    good_until: int = 0
    kinds: dict[str, int] = field(default_factory=dict)
    #: (record kind, start, end) of each intact top-level record.
    spans: list[tuple[str, int, int]] = field(default_factory=list)

    def problem(self) -> str | None:
        """One line for a damaged or incomplete part; None for a sound one."""
        recover = f"hilgw replay --recover {self.path}"
        intact = f"{self.messages} messages before it are intact"
        if self.truncated:
            return (
                f"{self.path}: incomplete: the file ends inside the record at byte {self.offset} "
                f"({self.error}); {intact}. A recorder killed before it closed the part leaves "
                f"this; recover them with: {recover}"
            )
        if self.error is not None:
            return (
                f"{self.path}: damaged at byte {self.offset}: {self.error}; {intact} ({recover} keeps them)"
            )
        if not self.complete:
            return f"{self.path}: incomplete: no footer; recover with: {recover}"
        return None


class _Counting:
    """A read-only file wrapper that knows how far it has read (the offset of
    the next record is where the reader stands between records)."""

    def __init__(self, f: IO[bytes]) -> None:
        self._f = f
        self.pos = 0

    def read(self, n: int = -1) -> bytes:
        data = self._f.read(n)
        self.pos += len(data)
        return data

    def read1(self, n: int = -1) -> bytes:
        return self.read(n)

    def readable(self) -> bool:
        return True


def _walk(path: Path, result: PartCheck) -> Iterator[tuple[McapRecord, list[McapRecord]]]:
    """Yield each intact top-level record (with its chunk's inner records), and
    fill ``result``; stops at the first damage (never raises for bad bytes)."""
    try:
        f = path.open("rb")
    except OSError as exc:
        result.error, result.offset = f"cannot read: {exc.strerror}", 0
        return
    with f:
        size = path.stat().st_size
        src = _Counting(f)
        reader = StreamReader(
            src,  # type: ignore[arg-type]  # a file-like object is what it reads from
            emit_chunks=True,
            validate_crcs=True,
            record_size_limit=MAX_RECORD_BYTES,
        )
        records = reader.records
        chunks: dict[int, tuple[int, int, int]] = {}  # start -> (length, first, last time) of each chunk
        while True:
            start = src.pos
            try:
                record = next(records)
                inner = breakup_chunk(record, validate_crc=True) if isinstance(record, Chunk) else []
            except StopIteration:
                return
            except Exception as exc:  # every way bytes can be wrong: named, never raised
                result.offset = start
                result.truncated = src.pos >= size
                result.error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                return
            result.records += 1
            name = type(record).__name__
            result.kinds[name] = result.kinds.get(name, 0) + 1
            result.spans.append((name, start, src.pos))
            result.messages += sum(isinstance(r, Message) for r in inner) + isinstance(record, Message)
            result.good_until = src.pos
            if isinstance(record, Chunk):
                chunks[start] = (src.pos - start, record.message_start_time, record.message_end_time)
            elif isinstance(record, ChunkIndex):
                seen = (record.chunk_length, record.message_start_time, record.message_end_time)
                if chunks.get(record.chunk_start_offset) != seen:
                    # The seeking reader trusts these offsets; one that points
                    # elsewhere makes it read garbage, or another chunk, as this one.
                    result.error = (
                        f"ChunkIndex points to byte {record.chunk_start_offset}, where no chunk of its "
                        "length and times starts: the index does not match the data"
                    )
                    result.offset = start
                    return
            if isinstance(record, Footer):
                result.complete = True
                bad = _summary_crc_error(f, record, start)
                if bad:
                    result.error, result.offset = bad, record.summary_start
                    return
            yield record, inner


def _summary_crc_error(f: IO[bytes], footer: Footer, footer_at: int) -> str | None:
    """The footer's CRC over the summary section (MCAP spec, "Footer"
    ``summary_crc``: from the summary's start through the footer's
    ``summary_offset_start``), which the library's reader does not check."""
    if footer.summary_crc == 0 or footer.summary_start == 0 or footer.summary_start > footer_at:
        return None
    end = footer_at + 1 + 8 + 8 + 8  # opcode, record length, summary_start, summary_offset_start
    here = f.tell()  # the reader goes on from here (the closing magic)
    f.seek(footer.summary_start)
    crc = zlib.crc32(f.read(end - footer.summary_start))
    f.seek(here)
    if crc != footer.summary_crc:
        return (
            f"summary section CRC mismatch (the index is damaged): expected {footer.summary_crc}, got {crc}"
        )
    return None


def check_part(path: Path) -> PartCheck:
    """Read a part from start to end, checking every CRC; see the module doc."""
    result = PartCheck(path)
    for _ in _walk(path, result):
        pass
    if result.complete and result.error is None and result.good_until == 0:
        result.error, result.offset = "empty file", 0
    return result


def check_parts(paths: list[Path]) -> None:
    """Raise :class:`RecordingError` for the first damaged or incomplete part
    (:class:`ConfigError` for a file that is no MCAP at all)."""
    for path in paths:
        found = check_part(path)
        if found.offset == 0 and found.records == 0:  # not damaged: not a recording at all
            raise ConfigError(str(path), f"cannot read as MCAP: {found.error}")
        problem = found.problem()
        if problem is not None:
            raise RecordingError(problem)


def recovered_path(path: Path) -> Path:
    """Where ``--recover`` writes the copy of ``path``."""
    return path.with_name(f"{path.stem}.recovered.mcap")


def recover_part(path: Path, out: Path | None = None) -> PartCheck:
    """Copy every intact record of ``path`` (up to the first damaged one; the
    chunk that was open at a crash is lost) into a new complete part ``out``
    (default :func:`recovered_path`). Returns what was read from ``path``;
    raises :class:`RecordingError` when nothing could be kept."""
    out = out or recovered_path(path)
    result = PartCheck(path)
    schemas: dict[int, int] = {}
    channels: dict[int, int] = {}
    kept = 0
    with out.open("xb") as f:
        writer = Writer(f, compression=CompressionType.ZSTD)
        started = False
        for record, inner in _walk(path, result):
            if isinstance(record, Header):
                writer.start(profile=record.profile, library=record.library)
                started = True
                continue
            if not started:
                break
            for r in inner or [record]:
                kept += _copy(writer, r, schemas, channels)
            if isinstance(record, DataEnd):
                break  # the summary is rebuilt by the writer
        if not started:
            writer.start(profile="", library="hilgw recover")
        writer.finish()  # type: ignore[no-untyped-call]  # the mcap library leaves it unannotated
    if kept == 0:
        out.unlink()
        raise RecordingError(f"{path}: nothing to recover ({result.error or 'no messages'})")
    return result


def _copy(writer: Writer, r: McapRecord, schemas: dict[int, int], channels: dict[int, int]) -> int:
    """Write one record to the new part; 1 for a message kept, else 0."""
    if isinstance(r, Schema):
        schemas[r.id] = writer.register_schema(r.name, r.encoding, r.data)
    elif isinstance(r, Channel):
        if r.schema_id == 0 or r.schema_id in schemas:
            channels[r.id] = writer.register_channel(
                r.topic, r.message_encoding, schemas.get(r.schema_id, 0), dict(r.metadata)
            )
    elif isinstance(r, Metadata):
        writer.add_metadata(r.name, dict(r.metadata))
    elif isinstance(r, Message) and r.channel_id in channels:
        writer.add_message(channels[r.channel_id], r.log_time, r.data, r.publish_time, r.sequence)
        return 1
    return 0
