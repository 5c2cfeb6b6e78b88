"""MCAP recording of every raw frame and every derived message (docs/recording.md).

The recorder is a bus subscriber like any other: bounded subscriptions
(``DROP_NEWEST``: a recording is an ordered journal, so what is queued is kept
and overflow is dropped and counted) on the ``raw``, ``reports``, ``tracks``
and ``health`` topics. The asyncio task only collects what is queued; the
protobuf conversion and the disk writes run in one worker thread, so a slow
disk never stalls the event loop. While a write is in flight, new items wait in
the subscriptions, whose bounds are the back-pressure.

Files are MCAP (mcap + mcap-protobuf-support) with the protobuf schemas
embedded, so Foxglove opens them as they are. A part rotates at a size or an
age into ``<stem>-<UTC start>-<part>.mcap``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from google.protobuf.message import Message
from mcap_protobuf.writer import Writer

from gateway.bus import FullPolicy, Subscription, Topic
from gateway.config import DeviceConfig, GatewayConfig, RecordingConfig
from gateway.devices.base import RawFrame, ReportsIn
from gateway.normalise import reports_to_proto
from hilgw.v1 import health_pb2, recording_pb2, track_pb2

__all__ = [
    "FORMAT",
    "META_END",
    "META_RUN",
    "TOPIC_TRACKS",
    "McapParts",
    "Recorder",
    "run_metadata",
    "topic_health",
    "topic_raw",
    "topic_reports",
]

log = logging.getLogger(__name__)

#: Written in every part's run metadata; replay refuses other formats.
FORMAT = "hilgw-recording/1"
#: MCAP metadata record names.
META_RUN = "hilgw.run"
META_END = "hilgw.end"

TOPIC_TRACKS = "/tracks"


def topic_raw(device_id: str) -> str:
    return f"/raw/{device_id}"


def topic_reports(device_id: str) -> str:
    return f"/reports/{device_id}"


def topic_health(device_id: str) -> str:
    return f"/health/{device_id}"


def run_metadata(config: GatewayConfig, devices: Sequence[DeviceConfig], epoch_ns: int = 0) -> dict[str, str]:
    """What replay needs to rebuild the decode path and the engine: the
    effective device blocks (emulated ones included, in the order the
    supervisor registered their sensors), the fusion config, and the run's
    epoch (``TrackBatch.epoch_ns``, so replayed batches are the live ones)."""
    run = {
        "gateway_id": config.gateway_id,
        "epoch_ns": epoch_ns,
        "devices": [_without_secrets(d.model_dump(mode="json")) for d in devices],
        "fusion": config.fusion.model_dump(mode="json"),
    }
    return {"format": FORMAT, "gateway_id": config.gateway_id, "run": json.dumps(run, sort_keys=True)}


def _without_secrets(block: dict[str, Any]) -> dict[str, Any]:
    """A device block fit for a recording: key values written inline (``hex:``) are
    replaced by a placeholder; ``env:``/``file:`` references name no secret and stay.
    Replay needs no key (launchers are not replayed, see gateway/replay.py)."""
    keys = block.get("cue_keys")
    if keys:
        inline = {k for k, v in keys.items() if str(v).startswith("hex:")}
        block["cue_keys"] = {k: ("hex:<redacted>" if k in inline else v) for k, v in keys.items()}
    return block


#: One record to write: (topic, message, log time ns, per-topic sequence).
Record = tuple[str, Message, int, int]


class McapParts:
    """Synchronous MCAP writer with rotation; used from one thread at a time.

    ``base`` is the configured path; parts are named
    ``<stem>-<YYYYmmddTHHMMSSZ>-<NNNN>.mcap`` in its directory. Each part
    carries the run metadata, so each can be inspected on its own, and ends
    with ``end_info()`` (the recorder's cumulative drop counts) as metadata.
    """

    def __init__(
        self,
        base: Path,
        metadata: dict[str, str],
        rotate_bytes: int,
        rotate_s: float | None,
        mono: Callable[[], float] = time.monotonic,
        chunk_size: int = 256 * 1024,
        end_info: Callable[[], dict[str, str]] = dict,
    ) -> None:
        self.base = base
        self.metadata = metadata
        self.rotate_bytes = rotate_bytes
        self.rotate_s = rotate_s
        self.mono = mono
        self.chunk_size = chunk_size
        self.end_info = end_info
        self.stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        self.files: list[Path] = []
        self.messages = 0
        self.bytes_closed = 0  # bytes of the finished parts
        self._file: IO[bytes] | None = None
        self._writer: Writer | None = None
        self._opened = 0.0
        self._part_bytes = 0

    def _open(self) -> Writer:
        self.base.parent.mkdir(parents=True, exist_ok=True)
        part = len(self.files) + 1
        while True:
            path = self.base.with_name(f"{self.base.stem}-{self.stamp}-{part:04d}.mcap")
            try:
                self._file = path.open("xb")  # never overwrite an earlier recording
                break
            except FileExistsError:  # a restarted recorder within the same second
                part += 1
        self._writer = Writer(self._file, chunk_size=self.chunk_size)
        self._writer.add_metadata(META_RUN, {**self.metadata, "part": str(part)})
        self.files.append(path)
        self._opened = self.mono()
        self._part_bytes = 0
        log.info("recording to %s", path)
        return self._writer

    def write(self, records: Sequence[Record]) -> None:
        """Write records to the current part, then rotate if it is full or old."""
        writer = self._writer or self._open()
        for topic, msg, t_ns, seq in records:
            writer.write_message(topic, msg, log_time=t_ns, publish_time=t_ns, sequence=seq)
            self._part_bytes += msg.ByteSize()
        self.messages += len(records)
        # Size is counted before compression: the writer holds the open chunk
        # in memory, so the file's own size lags; a part on disk is smaller.
        full = self._part_bytes >= self.rotate_bytes
        old = self.rotate_s is not None and self.mono() - self._opened >= self.rotate_s
        if full or old:
            self._finish(self.end_info())

    @property
    def bytes_written(self) -> int:
        return self.bytes_closed + (self._file.tell() if self._file is not None else 0)

    def _finish(self, end: dict[str, str]) -> None:
        if self._writer is None or self._file is None:
            return
        if end:
            self._writer.add_metadata(META_END, end)
        self._writer.finish()  # type: ignore[no-untyped-call]  # mcap-protobuf-support leaves it unannotated
        self.bytes_closed += self._file.tell()
        self._file.close()
        self._writer, self._file = None, None

    def close(self, end: dict[str, str] | None = None) -> None:
        """Finish the open part (index and footer), with ``end`` (default:
        ``end_info()``) as its closing metadata."""
        self._finish(self.end_info() if end is None else end)


@dataclass
class _Counters:
    raw_seq: dict[str, int]
    reports_seq: dict[str, int]
    tracks_seq: int = 0


class Recorder:
    """The recording task: ``await recorder.run()`` (restartable).

    Subscribes on construction, so construct it before the publishers run
    (the supervisor does, in ``_start``) and nothing published is missed.
    """

    def __init__(
        self,
        config: RecordingConfig,
        metadata: dict[str, str],
        *,
        raw: Topic[RawFrame],
        tracks: Topic[track_pb2.TrackBatch],
        health: Topic[health_pb2.DeviceHealth],
        reports: Topic[ReportsIn] | None = None,
        sensor_ids: Callable[[], list[str]] = list,
        gateway_id: str = "",
    ) -> None:
        self.config = config
        self.metadata = metadata
        self.sensor_ids = sensor_ids
        self.gateway_id = gateway_id
        self._wake = asyncio.Event()
        q, pol = config.queue, FullPolicy.DROP_NEWEST
        self.raw = raw.subscribe("recorder", maxsize=q, policy=pol, wake=self._wake)
        self.tracks = tracks.subscribe("recorder", maxsize=q, policy=pol, wake=self._wake)
        self.health = health.subscribe("recorder", maxsize=q, policy=pol, wake=self._wake)
        self.reports: Subscription[ReportsIn] | None = None
        if reports is not None and config.reports:
            self.reports = reports.subscribe("recorder", maxsize=q, policy=pol, wake=self._wake)
        self.parts: McapParts | None = None
        self.files: list[Path] = []
        self.messages_written = 0
        self.write_errors = 0
        #: Set in the writer thread once :meth:`run` has closed its last part (the
        #: files are complete). The gateway's shutdown gives up waiting after
        #: ``shutdown_timeout_s``; the thread still finishes the file: wait on this.
        self.finished = threading.Event()
        self._n = _Counters({}, {})

    @property
    def subscriptions(self) -> dict[str, Subscription[Any]]:
        subs: dict[str, Subscription[Any]] = {"raw": self.raw, "tracks": self.tracks, "health": self.health}
        if self.reports is not None:
            subs["reports"] = self.reports
        return subs

    def dropped(self) -> dict[str, int]:
        """Items the recorder's full queues discarded, by topic."""
        return {name: sub.dropped for name, sub in self.subscriptions.items()}

    def queue_depths(self) -> dict[str, int]:
        return {name: len(sub) for name, sub in self.subscriptions.items()}

    @property
    def bytes_written(self) -> int:
        return self.parts.bytes_written if self.parts is not None else 0

    def close(self) -> None:
        """Unsubscribe (the gateway is going away)."""
        for sub in self.subscriptions.values():
            sub.close()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        # One worker: writes stay in order and close() runs after the last write.
        pool = ThreadPoolExecutor(1, thread_name_prefix="hilgw-recorder")
        self.parts = parts = McapParts(
            self.config.path,
            self.metadata,
            rotate_bytes=int(self.config.rotate_mb * 1024 * 1024),
            rotate_s=self.config.rotate_s,
            end_info=self._end_info,
        )
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                batch = self._collect()
                if batch:
                    # Shielded: a cancel (shutdown) while the write waits for the
                    # worker would drop this batch, already off the queues and
                    # counted nowhere; the close below queues behind it.
                    await asyncio.shield(loop.run_in_executor(pool, self._write, parts, batch))
        finally:
            # Also on cancel (shutdown): write what is queued and finish the
            # part so the file has its index; shielded so a second cancel
            # cannot leave a file without a footer (the thread completes it).
            last = self._collect()
            fut = loop.run_in_executor(pool, self._write_and_close, parts, last)
            try:
                await asyncio.shield(fut)
            finally:
                pool.shutdown(wait=False)

    # --- worker side -----------------------------------------------------------

    def _collect(self) -> list[tuple[str, Any]]:
        out: list[tuple[str, Any]] = [("raw", f) for f in self.raw.get_all()]
        if self.reports is not None:
            out += [("reports", r) for r in self.reports.get_all()]
        out += [("tracks", b) for b in self.tracks.get_all()]
        out += [("health", h) for h in self.health.get_all()]
        return out

    def _to_records(self, batch: list[tuple[str, Any]]) -> list[Record]:
        n = self._n
        records: list[Record] = []
        sensor_ids: list[str] | None = None
        for kind, item in batch:
            if kind == "raw":
                f: RawFrame = item
                seq = n.raw_seq[f.device_id] = n.raw_seq.get(f.device_id, 0) + 1
                msg = recording_pb2.RawFrame(
                    device_id=f.device_id,
                    transport=f.transport,
                    receive_time_ns=f.receive_time_ns,
                    data=f.data,
                    sequence=seq,
                )
                records.append((topic_raw(f.device_id), msg, f.receive_time_ns, seq))
            elif kind == "reports":
                r: ReportsIn = item
                sensor_ids = sensor_ids if sensor_ids is not None else self.sensor_ids()
                seq = n.reports_seq[r.device_id] = n.reports_seq.get(r.device_id, 0) + 1
                rep = reports_to_proto(
                    r.reports,
                    sensor_ids,
                    r.receive_time_ns,
                    self.gateway_id,
                    batch_sequence=seq,
                    source=r.source,
                )
                records.append((topic_reports(r.device_id), rep, r.receive_time_ns, seq))
            elif kind == "tracks":
                b: track_pb2.TrackBatch = item
                n.tracks_seq += 1
                records.append((TOPIC_TRACKS, b, b.time_ns, n.tracks_seq))
            else:
                h: health_pb2.DeviceHealth = item
                records.append((topic_health(h.device_id), h, h.time_ns, 0))
        return records

    def _write(self, parts: McapParts, batch: list[tuple[str, Any]]) -> None:
        try:
            parts.write(self._to_records(batch))
        except OSError as exc:  # disk full, unplugged: count and say so, keep the gateway up
            self.write_errors += 1
            log.error("recording: write failed: %s", exc)
            raise
        finally:
            self.files = list(parts.files)
        self.messages_written = parts.messages

    def _end_info(self) -> dict[str, str]:
        return {"dropped": json.dumps(self.dropped(), sort_keys=True)}

    def _write_and_close(self, parts: McapParts, batch: list[tuple[str, Any]]) -> None:
        try:
            if batch:
                self._write(parts, batch)
        finally:
            parts.close()
            self.files = list(parts.files)
            self.finished.set()
