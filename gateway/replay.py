"""``hilgw replay``: feed a recording's raw frames back through the codecs and
the fusion engine (docs/recording.md).

Nothing here looks at the wall clock to decide anything. Each recorded raw
chunk goes through the same driver decode path as live (``feed_raw``, or the
serial radar's ``feed``) with its recorded receive time, and the
engine is stepped at the recorded step times (each recorded ``TrackBatch``'s
``time_ns`` is the time its step was taken). Frames and steps are merged in
time order; a frame received at the very nanosecond of a step goes into that
step, as a driver chunk and a step never interleave on the event loop. So a
replay is a pure function of the recording: the same recording gives
byte-identical TrackBatches every time, and the ones the live run published
while nothing was dropped (see :attr:`RecordingInfo.dropped`). ``speed`` only
paces the loop; it changes no output.

Launcher devices (protocols in :data:`SKIPPED_PROTOCOLS`) are not fed: their
raw frames are acks and heartbeats of the cue path, which is no input of
fusion. Their frames are counted in :attr:`ReplayResult.skipped`. A device of
any other protocol whose driver has no replay interface makes replay refuse
the recording (a :class:`ConfigError` naming the device), never skip it.
"""

from __future__ import annotations

import heapq
import json
import struct
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from mcap.exceptions import McapError
from mcap.reader import make_reader
from pydantic import ValidationError

from gateway.bus import Topic
from gateway.config import DeviceConfig, FusionConfig, GatewayConfig, MqttConfig
from gateway.devices.base import DriverContext, DriverServices, RawFrame, ReportsIn, build_driver
from gateway.fusion_stage import FusionStage
from gateway.health import DeviceStats
from gateway.recording import FORMAT, META_END, META_RUN, TOPIC_TRACKS
from gateway.recording_check import RecordingError, check_parts
from hilgw.errors import ConfigError
from hilgw.tomlconfig import one_line
from hilgw.v1 import recording_pb2, track_pb2

__all__ = [
    "SKIPPED_PROTOCOLS",
    "Pacer",
    "RecordingInfo",
    "Replay",
    "ReplayResult",
    "Replayable",
    "read_info",
    "replay_command",
    "replay_files",
    "timeline",
]

# Merge rank at equal times: frames first, then the step (see module doc).
_RAW, _STEP = 0, 1


@runtime_checkable
class Replayable(Protocol):
    """A driver whose per-chunk handling can be called without its transport:
    ``feed_raw(data, t_rx)`` takes ``RawFrame.data`` exactly as the driver
    published it (a CAN driver that packs several frames into one RawFrame
    unpacks them here)."""

    def open_session(self) -> None: ...

    def feed_raw(self, data: bytes, t_rx: int) -> None: ...


#: Drivers whose ``feed(data, t_rx)`` already takes the published raw bytes.
_FEED_IS_RAW = frozenset({"serial_radar"})

#: Protocols whose raw frames replay counts and does not feed: a launcher's
#: acks and heartbeats feed the cue path, not fusion (no driver is built, so
#: no cue keys are loaded either).
SKIPPED_PROTOCOLS = frozenset({"launcher"})


class _FeedAsRaw:
    """``feed`` under the name ``feed_raw``, for the drivers in _FEED_IS_RAW."""

    def __init__(self, driver: Any) -> None:
        self.driver = driver

    def open_session(self) -> None:
        self.driver.open_session()

    def feed_raw(self, data: bytes, t_rx: int) -> None:
        self.driver.feed(data, t_rx)


@dataclass(frozen=True)
class RecordingInfo:
    """What a recording says about the run that made it."""

    paths: list[Path]
    gateway_id: str
    devices: list[DeviceConfig]
    fusion: FusionConfig
    start_ns: int
    end_ns: int
    raw_frames: int
    track_batches: int
    #: Items the live recorder dropped, by topic ({} when it did not say:
    #: the file was not closed). Non-zero raw or tracks: replay cannot match.
    dropped: dict[str, int]
    #: The live run's epoch (TrackBatch.epoch_ns); 0 for recordings made before it.
    epoch_ns: int = 0


def _part_key(p: Path) -> tuple[str, str]:
    return (p.parent.as_posix(), p.name)


def read_info(paths: Sequence[Path]) -> RecordingInfo:
    """Read the run metadata and message counts of a recording's parts.

    Raises ConfigError naming the file when a part is not a hilgw recording or
    parts come from different runs.
    """
    if not paths:
        raise ConfigError("replay", "no recording given")
    ordered = sorted((Path(p) for p in paths), key=_part_key)
    # Every part read once, every CRC checked, before anything is replayed:
    # a damaged or unclosed part is named with its offset (gateway/recording_check.py).
    check_parts(ordered)
    run: str | None = None
    dropped: dict[str, int] = {}
    start, end, n_raw, n_tracks = 0, 0, 0, 0
    for path in ordered:
        try:
            with path.open("rb") as f:
                reader = make_reader(f, validate_crcs=True)
                metas = {m.name: m.metadata for m in reader.iter_metadata()}
                summary = reader.get_summary()
        except (OSError, McapError, ValueError, EOFError, struct.error) as exc:
            raise ConfigError(str(path), f"cannot read as MCAP: {exc}") from None
        meta = metas.get(META_RUN)
        if meta is None or meta.get("format") != FORMAT:
            raise ConfigError(str(path), f"not a {FORMAT} file (no {META_RUN} metadata)")
        if run is not None and meta["run"] != run:
            raise ConfigError(str(path), "part of a different run than the first file")
        run = meta["run"]
        # Cumulative counts at the end of each part: the largest is the run's.
        for topic, n in json.loads(metas.get(META_END, {}).get("dropped", "{}")).items():
            dropped[topic] = max(dropped.get(topic, 0), int(n))
        if summary is not None and summary.statistics is not None:
            st = summary.statistics
            if st.message_count:
                start = min(start, st.message_start_time) if start else st.message_start_time
                end = max(end, st.message_end_time)
            topics = {c.id: c.topic for c in summary.channels.values()}
            for cid, n in st.channel_message_counts.items():
                if topics.get(cid, "").startswith("/raw/"):
                    n_raw += n
                elif topics.get(cid) == TOPIC_TRACKS:
                    n_tracks += n
    assert run is not None
    try:
        cfg = json.loads(run)
        return RecordingInfo(
            paths=ordered,
            gateway_id=cfg["gateway_id"],
            devices=[DeviceConfig.model_validate(d) for d in cfg["devices"]],
            fusion=FusionConfig.model_validate(cfg["fusion"]),
            start_ns=start,
            end_ns=end,
            raw_frames=n_raw,
            track_batches=n_tracks,
            dropped=dropped,
            epoch_ns=int(cfg.get("epoch_ns", 0)),
        )
    except ValidationError as exc:  # metadata lie outside the chunks' CRCs
        raise one_line(exc, cfg, f"{ordered[0]}: run metadata") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(str(ordered[0]), f"run metadata unusable: {type(exc).__name__}: {exc}") from None


#: One timeline entry: (time ns, rank, decoded message).
Entry = tuple[int, int, recording_pb2.RawFrame | track_pb2.TrackBatch]


def _part_entries(path: Path) -> Iterator[Entry]:
    n = 0
    try:
        for n, entry in enumerate(_read_entries(path), 1):  # noqa: B007  # n names the place of a failure
            yield entry
    except (McapError, ValueError, EOFError, struct.error, KeyError, OSError, MemoryError) as exc:
        # check_parts read this part whole; a failure here is damage it could
        # not see (a CRC of 0, an index that points elsewhere).
        raise RecordingError(f"{path}: damaged after message {n}: {type(exc).__name__}: {exc}") from None


def _read_entries(path: Path) -> Iterator[Entry]:
    with path.open("rb") as f:
        reader = make_reader(f, validate_crcs=True)
        group: list[tuple[int, int, int, Entry]] = []
        for _schema, channel, message in reader.iter_messages(log_time_order=True):
            entry: Entry
            if channel.topic.startswith("/raw/"):
                entry = (message.log_time, _RAW, recording_pb2.RawFrame.FromString(message.data))
            elif channel.topic == TOPIC_TRACKS:
                entry = (message.log_time, _STEP, track_pb2.TrackBatch.FromString(message.data))
            else:
                continue
            # Ties on time: raw before step, then the recorder's per-topic sequence.
            if group and group[0][0] != message.log_time:
                yield from (g[3] for g in sorted(group, key=lambda g: g[:3]))
                group = []
            group.append((message.log_time, entry[1], message.sequence, entry))
        yield from (g[3] for g in sorted(group, key=lambda g: g[:3]))


def timeline(paths: Sequence[Path]) -> Iterator[Entry]:
    """Raw frames and recorded steps of all parts, merged in time order."""
    parts = [_part_entries(p) for p in sorted(paths, key=_part_key)]
    return heapq.merge(*parts, key=lambda e: (e[0], e[1]))


@dataclass
class ReplayResult:
    """What a replay produced, next to what the recording held."""

    replayed: list[track_pb2.TrackBatch] = field(default_factory=list)
    recorded: list[track_pb2.TrackBatch] = field(default_factory=list)
    #: Raw chunks fed to a driver.
    frames: int = 0
    #: Raw chunks not fed, by device id (devices of SKIPPED_PROTOCOLS).
    skipped: dict[str, int] = field(default_factory=dict)

    @property
    def identical(self) -> int:
        """Steps whose replayed TrackBatch is byte-identical to the recorded one."""
        return sum(
            a.SerializeToString(deterministic=True) == b.SerializeToString(deterministic=True)
            for a, b in zip(self.replayed, self.recorded, strict=True)
        )


class Replay:
    """The decode path and the engine of a recorded run, fed by hand.

    Built from the recording's own device blocks and fusion config, with the
    sensors registered in the recorded order (the same
    :func:`gateway.devices.base.build_driver` as live), on private topics:
    nothing here touches a transport, a broker or the clock. Devices of :data:`SKIPPED_PROTOCOLS`
    get no driver (they register no sensor live either); their ids are in
    :attr:`skipped_devices`.
    """

    def __init__(self, info: RecordingInfo) -> None:
        from gateway.devices.ownship import OwnShipRegistry

        self.info = info
        # Validated as the live gateway's config was (the recording's own blocks).
        config = GatewayConfig(
            gateway_id=info.gateway_id,
            devices=info.devices,
            # Replay steps by hand, on the recording's clock: on this thread.
            fusion=info.fusion.model_copy(update={"worker": "inline"}),
            mqtt=MqttConfig(enabled=False),
        )
        # The live decode path on private topics: the same FusionStage and the
        # same build_driver (sensor registration in the recorded device order).
        # The tracks topic has no subscriber; steps are taken here.
        self.reports: Topic[ReportsIn] = Topic("reports")
        self.raw: Topic[RawFrame] = Topic("raw")
        self.fusion = FusionStage(config.fusion, config.gateway_id, self.reports, Topic("tracks"))
        self.fusion.epoch_ns = info.epoch_ns  # the live batches' lineage, not this process's
        ownship = OwnShipRegistry()
        self.stats: dict[str, DeviceStats] = {}
        self.drivers: dict[str, Replayable] = {}
        self.skipped_devices: dict[str, str] = {}  # device id -> protocol
        for dev in info.devices:
            if dev.protocol in SKIPPED_PROTOCOLS:
                self.skipped_devices[dev.id] = dev.protocol
                continue
            stats = self.stats[dev.id] = DeviceStats(
                dev.id, dev.protocol, dev.transport.kind, gateway_id=info.gateway_id
            )
            ctx = DriverContext(info.gateway_id, self.reports, self.raw, stats)
            driver = build_driver(dev, ctx, DriverServices(self.fusion.engine.add_sensor, ownship))
            driver.ctx.mono = lambda: 0.0  # liveness bookkeeping only; no output depends on it
            replayable: Replayable
            if isinstance(driver, Replayable):
                replayable = driver
            elif dev.protocol in _FEED_IS_RAW:
                replayable = _FeedAsRaw(driver)
            else:
                raise ConfigError(
                    f"devices[{dev.id}]", f"protocol {dev.protocol!r} has no replayable driver (feed_raw) yet"
                )
            replayable.open_session()
            self.drivers[dev.id] = replayable

    def feed(self, frame: recording_pb2.RawFrame) -> bool:
        """Feed one raw chunk to its device's driver; False when the device's
        protocol is skipped (see :data:`SKIPPED_PROTOCOLS`)."""
        driver = self.drivers.get(frame.device_id)
        if driver is None:
            if frame.device_id in self.skipped_devices:
                return False
            raise ConfigError("replay", f"raw frame of device {frame.device_id!r} not in the run metadata")
        driver.feed_raw(frame.data, frame.receive_time_ns)
        return True

    def step(self, t_ns: int) -> track_pb2.TrackBatch:
        return self.fusion.step_once(t_ns)

    def run(
        self,
        entries: Iterable[Entry],
        on_step: Callable[[track_pb2.TrackBatch, track_pb2.TrackBatch], None] | None = None,
        pace: Callable[[int], None] | None = None,
    ) -> ReplayResult:
        """Feed every entry; ``pace(t_ns)`` is called before each (speed
        control, progress), ``on_step(replayed, recorded)`` after each step."""
        result = ReplayResult()
        for t_ns, rank, msg in entries:
            if pace is not None:
                pace(t_ns)
            if rank == _RAW:
                assert isinstance(msg, recording_pb2.RawFrame)
                if self.feed(msg):
                    result.frames += 1
                else:
                    result.skipped[msg.device_id] = result.skipped.get(msg.device_id, 0) + 1
            else:
                assert isinstance(msg, track_pb2.TrackBatch)
                out = self.step(msg.time_ns)
                result.replayed.append(out)
                result.recorded.append(msg)
                if on_step is not None:
                    on_step(out, msg)
        return result


class Pacer:
    """Sleeps so that recorded time advances ``speed`` times as fast as the
    wall clock (None: as fast as possible). Pacing only; no output depends on it."""

    def __init__(self, speed: float | None, sleep: Callable[[float], None] = time.sleep) -> None:
        self.speed = speed
        self.sleep = sleep
        self._t0: tuple[int, float] | None = None

    def __call__(self, t_ns: int) -> None:
        if self.speed is None:
            return
        now = time.monotonic()
        if self._t0 is None:
            self._t0 = (t_ns, now)
            return
        due = self._t0[1] + (t_ns - self._t0[0]) * 1e-9 / self.speed
        if due > now:
            self.sleep(due - now)


def replay_files(
    paths: Sequence[Path],
    speed: float | None = None,
    on_step: Callable[[track_pb2.TrackBatch, track_pb2.TrackBatch], None] | None = None,
    progress: Callable[[int], None] | None = None,
) -> ReplayResult:
    """Replay a recording (all its parts); see :class:`Replay`."""
    info = read_info(paths)
    pacer = Pacer(speed)

    def pace(t_ns: int) -> None:
        pacer(t_ns)
        if progress is not None:
            progress(t_ns)

    return Replay(info).run(timeline(info.paths), on_step=on_step, pace=pace)


def replay_command(paths: Sequence[Path], speed: float | None, check: bool, show_progress: bool) -> int:
    """``hilgw replay``: replay with a progress bar and a summary; with
    ``check``, exit 1 unless every step matches the recording byte for byte."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    info = read_info(paths)
    console = Console(stderr=True)
    span = max(info.end_ns - info.start_ns, 1)
    if any(info.dropped.get(k, 0) for k in ("raw", "tracks")):
        console.print(f"[yellow]the live recorder dropped items {info.dropped}: replay cannot match it")
    columns = (
        TextColumn("replay"),
        BarColumn(),
        TextColumn("{task.percentage:>5.1f}% of {task.fields[span]:.1f} s recorded"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, disable=not show_progress) as bar:
        task = bar.add_task("replay", total=span, span=span * 1e-9)
        last = [0.0]

        def progress(t_ns: int) -> None:
            now = time.monotonic()
            if now - last[0] > 0.1:  # the bar is for people: ten updates a second is plenty
                bar.update(task, completed=t_ns - info.start_ns)
                last[0] = now

        result = Replay(info).run(timeline(info.paths), pace=_chain(Pacer(speed), progress))
        bar.update(task, completed=span)
    same = result.identical
    steps = len(result.replayed)
    tracks = len(result.replayed[-1].tracks) if result.replayed else 0
    console.print(
        f"{len(info.paths)} file(s), {result.frames} raw chunks, {_skipped_text(result.skipped)}"
        f"{steps} steps, {tracks} tracks at the end; {same}/{steps} steps identical to the recording",
        soft_wrap=True,  # one line, whatever the terminal width: scripts grep it
    )
    return 0 if (same == steps or not check) else 1


def _skipped_text(skipped: dict[str, int]) -> str:
    """``"12 launcher chunks skipped (launcher-1: 12), "``, or nothing when none were."""
    if not skipped:
        return ""
    each = ", ".join(f"{dev}: {n}" for dev, n in sorted(skipped.items()))
    return f"{sum(skipped.values())} launcher chunks skipped ({each}), "


def _chain(*fns: Callable[[int], None]) -> Callable[[int], None]:
    def call(t_ns: int) -> None:
        for fn in fns:
            fn(t_ns)

    return call
