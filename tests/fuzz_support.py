"""One fuzz harness for every codec in drivers/, both roles (issue 14 item 4).

Used by ``benchmarks/fuzz_codecs.py`` (millions of inputs from a seeded
``random.Random``) and by ``tests/unit/test_codec_fuzz.py`` (a few hundred
inputs per target from hypothesis). A :class:`Target` is a codec, a role and
the public call that takes remote input: ``receive_frames`` (CAN),
``receive_data`` + ``drain``/``next_event`` (streams), ``receive_datagram``
(UDP). Roles that receive nothing by design (the serial and CAN radar
devices, the ASTERIX sender) are fuzzed on what they do take: events to
encode, with garbage values, where :class:`LocalProtocolError` is the right
answer.

Inputs are valid wire data made by the other role's encoder from the events
of each codec's own unit tests (so the seeds follow the codec when its ICD
changes), then mutated: random bytes, bit flips, truncation, a slice cut out,
splices of two inputs, a slice repeated (repeated fields), bytes set to edge
values, concatenations; for CAN also ids moved, the FD and 29-bit flags
flipped, frames dropped, doubled and reordered.

Every input gets one outcome (:func:`run_one`): the events it produced
(``event:<type>``, ``rejected:<reason>``), ``refused_local:<reason>`` for an
encode target, ``raised_remote:<reason>`` if a codec raised a
RemoteProtocolError instead of returning it, or ``foreign:<exception>``: any
other exception, which is a bug (hilgw/errors.py).
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from drivers.base import NEED_DATA, Rejected, Role
from drivers.can_radar import CanRadarCodec
from drivers.radar import TRACK_BATCH_DTYPE, Status
from drivers.serial_radar import SerialRadarCodec
from hilgw.can import CanFrame
from hilgw.errors import LocalProtocolError, RemoteProtocolError

__all__ = ["Tally", "Target", "run_one", "targets"]

NOW = 1_800_000_000_000_000_000
_EDGE = (0x00, 0x01, 0x7F, 0x80, 0xFE, 0xFF)
_GARBAGE_FLOATS = (math.nan, math.inf, -math.inf, -1.0, 0.0, 1e300, -1e300, 5e-324, 2.0**63)
_GARBAGE_INTS = (-1, 0, 1, 2**31, 2**32, 2**63 - 1, -(2**63), 2**64)


# --- mutators --------------------------------------------------------------------------


def mutate_bytes(r: random.Random, seeds: Sequence[bytes], max_len: int) -> bytes:
    """One mutation of a seed (or random bytes); sometimes two stacked."""
    out = _mutate_once(r, seeds, max_len)
    if r.random() < 0.25:
        out = _mutate_once(r, [out], max_len)
    return out


def _mutate_once(r: random.Random, seeds: Sequence[bytes], max_len: int) -> bytes:
    op = r.randrange(9)
    a = r.choice(seeds) if seeds else b""
    n = len(a)
    if op == 0 or not a:  # random bytes
        return r.randbytes(r.randrange(max_len + 1))
    if op == 1:  # bit flips
        b = bytearray(a)
        for _ in range(r.randint(1, 8)):
            i = r.randrange(n)
            b[i] ^= 1 << r.randrange(8)
        return bytes(b)
    if op == 2:  # truncation
        return a[: r.randrange(n)]
    if op == 3:  # a slice cut out
        i = r.randrange(n)
        return a[:i] + a[r.randint(i, n) :]
    if op == 4:  # splice of two inputs
        b2 = r.choice(seeds)
        return a[: r.randint(0, n)] + b2[r.randint(0, len(b2)) :]
    if op == 5:  # a slice repeated (repeated fields)
        i = r.randrange(n)
        j = r.randint(i, min(n, i + 16))
        return a[:i] + a[i:j] * r.randint(2, 5) + a[j:]
    if op == 6:  # bytes set to edge or random values
        b = bytearray(a)
        for _ in range(r.randint(1, 4)):
            b[r.randrange(n)] = r.choice(_EDGE) if r.random() < 0.5 else r.randrange(256)
        return bytes(b)
    if op == 7:  # valid inputs back to back
        return b"".join(r.choice(seeds) for _ in range(r.randint(2, 3)))
    return a  # unchanged: the valid path keeps being exercised


def mutate_frames(
    r: random.Random, seeds: Sequence[Sequence[CanFrame]], ids: Sequence[int]
) -> list[CanFrame]:
    """A frame sequence from one or two seed sequences, each frame possibly mutated."""
    frames = list(r.choice(seeds))
    if r.random() < 0.3:
        frames += r.choice(seeds)
    out: list[CanFrame] = []
    p = r.choice((0.1, 0.3, 1.0))
    for f in frames:
        if r.random() >= p:
            out.append(f)
            continue
        op = r.randrange(8)
        if op < 3:
            f = f._replace(data=mutate_bytes(r, [f.data], 64))
        elif op == 3:
            f = f._replace(arbitration_id=r.choice(ids) if r.random() < 0.7 else r.randrange(0x800))
        elif op == 4:
            f = f._replace(is_fd=not f.is_fd)
        elif op == 5:
            f = f._replace(is_extended=not f.is_extended)
        elif op == 6:
            continue  # dropped
        else:
            out.append(f)  # doubled
        out.append(f)
    if len(out) > 1 and r.random() < 0.2:  # reordered
        i = r.randrange(len(out) - 1)
        out[i], out[i + 1] = out[i + 1], out[i]
    # Receive times: the gateway's clock, or a recording's (replay), so now and then anything.
    u = r.random()
    t = NOW + r.randrange(-(10**15), 10**15) if u < 0.1 else r.randrange(2**63 - 2**32) if u < 0.15 else NOW
    return [f._replace(timestamp_ns=t + k * 1000) for k, f in enumerate(out)]


def garbage_reports(r: random.Random, n: int) -> npt.NDArray[np.void]:
    """A TRACK_BATCH_DTYPE array, valid but for a few garbage cells."""
    arr = valid_reports(r, n)
    for _ in range(r.randint(0, 4)):
        name = r.choice(TRACK_BATCH_DTYPE.names or ())
        row = r.randrange(n)
        kind = TRACK_BATCH_DTYPE[name].kind
        if kind == "f":
            arr[name][row] = r.choice(_GARBAGE_FLOATS) if r.random() < 0.6 else r.uniform(-1e9, 1e9)
        elif kind == "b":
            arr[name][row] = r.random() < 0.5
        else:
            info = np.iinfo(TRACK_BATCH_DTYPE[name])
            arr[name][row] = r.randint(int(info.min), int(info.max))
    return arr


def valid_reports(r: random.Random, n: int) -> npt.NDArray[np.void]:
    arr = np.zeros(n, dtype=TRACK_BATCH_DTYPE)
    arr["sensor_track_id"] = [r.randrange(4096) for _ in range(n)]
    arr["sensor_time_ns"] = NOW + np.arange(n) * 1_000_000
    arr["range_m"] = [r.uniform(1e3, 3e5) for _ in range(n)]
    arr["azimuth_rad"] = [r.uniform(0, 2 * math.pi) for _ in range(n)]
    arr["elevation_rad"] = [r.uniform(-0.1, 1.2) for _ in range(n)]
    arr["range_rate_mps"] = [r.uniform(-3000, 3000) for _ in range(n)]
    rates = r.random() < 0.5
    arr["rates_valid"] = rates
    if rates:
        arr["azimuth_rate_radps"] = 0.01
        arr["elevation_rate_radps"] = -0.01
        arr["sigma_azimuth_rate_radps"] = 1e-3
        arr["sigma_elevation_rate_radps"] = 1e-3
    arr["sigma_range_m"] = 5.0
    arr["sigma_azimuth_rad"] = 1e-3
    arr["sigma_elevation_rad"] = 1e-3
    arr["sigma_range_rate_mps"] = 1.0
    arr["quality"] = [r.random() for _ in range(n)]
    return arr


def garbage_kwargs(r: random.Random, base: dict[str, Any]) -> dict[str, Any]:
    """``base`` with a few numeric values replaced by garbage of the same kind."""
    kw = dict(base)
    names = [k for k, v in kw.items() if isinstance(v, int | float) and not isinstance(v, bool)]
    for _ in range(r.randint(0, 3)):
        if not names:
            break
        k = r.choice(names)
        if isinstance(kw[k], float):
            kw[k] = r.choice(_GARBAGE_FLOATS)
        else:
            kw[k] = r.choice(_GARBAGE_INTS) if r.random() < 0.6 else r.randint(-(2**40), 2**40)
    return kw


# --- targets ---------------------------------------------------------------------------


@dataclass
class Target:
    """A codec's role and the public call fuzzed; ``make`` builds a fresh codec."""

    name: str
    make: Callable[[], Any]
    feed: Callable[[Any, Any], list[Any]]
    gen: Callable[[random.Random], Any]
    #: Encode targets: a LocalProtocolError is the right answer to garbage events.
    encode: bool = False
    #: Streams keep state across inputs (a fresh codec every this many).
    reset_every: int = 1
    #: The valid inputs mutations start from (CAN: frame lists; else bytes).
    seeds: Sequence[Any] = ()


@dataclass
class Tally:
    """Outcome counts of one target."""

    inputs: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    foreign: Counter[str] = field(default_factory=Counter)
    examples: dict[str, str] = field(default_factory=dict)

    @property
    def foreign_total(self) -> int:
        return sum(self.foreign.values())


def run_one(target: Target, codec: Any, inp: Any, tally: Tally) -> BaseException | None:
    """Feed one input; count its outcome; return a foreign exception (a bug) or None."""
    tally.inputs += 1
    try:
        events = target.feed(codec, inp)
    except RemoteProtocolError as exc:
        tally.outcomes[f"raised_remote:{exc.reason}"] += 1
        return None
    except LocalProtocolError as exc:
        if target.encode:
            tally.outcomes[f"refused_local:{exc.reason}"] += 1
            return None
        return _foreign(tally, exc, inp)
    except Exception as exc:  # the point of the harness: anything else is a bug
        return _foreign(tally, exc, inp)
    if not events:
        tally.outcomes["nothing"] += 1
    for ev in events:
        if isinstance(ev, Rejected):
            tally.outcomes[f"rejected:{ev.reason}"] += 1
        else:
            tally.outcomes[f"event:{type(ev).__name__}"] += 1
    return None


def _foreign(tally: Tally, exc: BaseException, inp: Any) -> BaseException:
    key = f"{type(exc).__name__}: {str(exc)[:80]}"
    tally.foreign[type(exc).__name__] += 1
    tally.outcomes[f"foreign:{type(exc).__name__}"] += 1
    tally.examples.setdefault(key, repr(inp)[:400])
    return exc


def _stream_drain(codec: Any, data: bytes) -> list[Any]:
    if not data:
        return []  # b"" is end of stream to some codecs: not an input
    codec.receive_data(data)
    out: list[Any] = codec.drain()
    return out


def _nmea(codec: Any, inp: tuple[bool, bytes]) -> list[Any]:
    stream, data = inp
    if not stream:
        out: list[Any] = codec.receive_datagram(data, NOW)
        return out
    codec.receive_data(data, NOW)
    events = []
    while (ev := codec.next_event()) is not NEED_DATA:
        events.append(ev)
    return events


def _can_feed(codec: Any, frames: list[CanFrame]) -> list[Any]:
    out: list[Any] = list(codec.receive_frames(frames))
    expire = getattr(codec, "expire", None)
    if expire is not None and frames and frames[-1].timestamp_ns % 7 == 0:
        out += expire(frames[-1].timestamp_ns + 2_000_000_000)  # time-outs run too
    return out


def _serial_radar_targets() -> list[Target]:
    from tests.unit.test_serial_radar_codec import EXAMPLE_STATUS, EXAMPLE_TRACK

    dev = SerialRadarCodec(Role.DEVICE, sensor_id=7)
    rng = random.Random(1)
    seeds = [
        dev.send(EXAMPLE_TRACK),
        dev.send(EXAMPLE_STATUS),
        dev.encode_track_batch(valid_reports(rng, 3)),
    ]
    status_kw = {f.name: getattr(EXAMPLE_STATUS, f.name) for f in dataclasses.fields(Status)}

    def encode(codec: SerialRadarCodec, inp: tuple[str, Any]) -> list[Any]:
        kind, value = inp
        if kind == "batch":
            return [codec.encode_track_batch(value)]
        return [codec.send(Status(**value))]

    return [
        Target(
            "serial_radar/gateway",
            lambda: SerialRadarCodec(Role.GATEWAY, sensor_id=7),
            _stream_drain,
            lambda r: mutate_bytes(r, seeds, 300),
            reset_every=1000,
            seeds=seeds,
        ),
        Target(
            "serial_radar/device",
            lambda: SerialRadarCodec(Role.DEVICE, sensor_id=7),
            encode,
            lambda r: (
                ("batch", garbage_reports(r, r.randint(1, 4)))
                if r.random() < 0.7
                else ("status", garbage_kwargs(r, status_kw))
            ),
            encode=True,
        ),
    ]


def _can_radar_targets() -> list[Target]:
    from drivers.can_radar.icd import KIND_BY_ID
    from drivers.launcher.codec_can import LauncherCanCodec

    rng = random.Random(2)
    seeds: list[list[CanFrame]] = []
    for fd in (False, True):
        dev = CanRadarCodec(Role.DEVICE, fd=fd)
        for n in (1, 2):
            seeds.append(dev.encode_reports(valid_reports(rng, n)))
        st = Status(
            sensor_time_ns=NOW, state=1, time_sync_locked=True, radiating=True, track_count=3, uptime_s=9
        )
        seeds.append([dev.send(st)])
    ids = sorted(set(KIND_BY_ID) | set(LauncherCanCodec(Role.GATEWAY).frame_ids))
    status_kw = {
        "sensor_time_ns": NOW,
        "state": 0,
        "time_sync_locked": True,
        "radiating": False,
        "track_count": 5,
        "uptime_s": 60,
        "fault_code": 0,
    }

    def encode(codec: CanRadarCodec, inp: tuple[str, Any]) -> list[Any]:
        kind, value = inp
        if kind == "batch":
            return list(codec.encode_reports(value))
        return [codec.send(Status(**value))]

    out = []
    for fd in (False, True):
        fmt = "fd" if fd else "classic"
        out += [
            Target(
                f"can_radar/gateway {fmt}",
                lambda fd=fd: CanRadarCodec(Role.GATEWAY, fd=fd, reorder_window=2, max_pending=64),
                _can_feed,
                lambda r: mutate_frames(r, seeds, ids),
                reset_every=1000,
                seeds=seeds,
            ),
            Target(
                f"can_radar/device {fmt}",
                lambda fd=fd: CanRadarCodec(Role.DEVICE, fd=fd),
                encode,
                lambda r: (
                    ("batch", garbage_reports(r, r.randint(1, 3)))
                    if r.random() < 0.7
                    else ("status", garbage_kwargs(r, status_kw))
                ),
                encode=True,
            ),
        ]
    return out


def _asterix_targets() -> list[Target]:
    from drivers.asterix import AsterixCodec
    from tests.unit.test_asterix_codec import T0, plot, track

    dev = AsterixCodec(Role.DEVICE)
    events = [track(), track(track_number=7, vx_mps=120.0, vy_mps=-30.0), plot(), plot(range_m=1.5e5)]
    seeds = [dev.send(events[:2]), dev.send(events[2:]), dev.send(events[0]), dev.send(events[2])]

    def receive(codec: AsterixCodec, data: bytes) -> list[Any]:
        # Both public receive calls, by turns: per-record events and the batched hot path.
        if len(data) % 2:
            return list(codec.receive_datagram_batch(data, T0))
        out: list[Any] = codec.receive_datagram(data, T0)
        return out

    def encode(codec: AsterixCodec, kws: list[tuple[type, dict[str, Any]]]) -> list[Any]:
        return [codec.send([cls(**kw) for cls, kw in kws])]

    bases = [(type(e), {f.name: getattr(e, f.name) for f in dataclasses.fields(e)}) for e in events]
    return [
        Target(
            "asterix/gateway",
            lambda: AsterixCodec(Role.GATEWAY),
            receive,
            lambda r: mutate_bytes(r, seeds, 600),
            seeds=seeds,
        ),
        Target(
            "asterix/device",
            lambda: AsterixCodec(Role.DEVICE),
            encode,
            lambda r: [(cls, garbage_kwargs(r, kw)) for cls, kw in r.sample(bases, r.randint(1, 3))],
            encode=True,
        ),
    ]


def _nmea_targets() -> list[Target]:
    from drivers.nmea.codec import NmeaCodec
    from tests.unit.test_nmea_codec import GGA, HDT

    seeds = [GGA, HDT, GGA + HDT]
    return [
        Target(
            f"nmea/{role.value}",
            lambda role=role: NmeaCodec(role),
            _nmea,
            lambda r: (r.random() < 0.5, mutate_bytes(r, seeds, 200)),
            reset_every=1000,
            seeds=[(stream, s) for s in seeds for stream in (False, True)],
        )
        for role in Role
    ]


def _dis_targets() -> list[Target]:
    from drivers.dis import DisCodec, EntityState

    codec = DisCodec(Role.DEVICE)
    seeds = [
        codec.send(EntityState((1, 2, 3))),
        codec.send(EntityState((4, 5, 6), location_m=(4e6, 3e5, 4.9e6), velocity_mps=(100.0, 0.0, 0.0))),
    ]
    seeds.append(seeds[0] + seeds[1])
    return [
        Target(
            f"dis/{role.value}",
            lambda role=role: DisCodec(role),
            lambda c, d: list(c.receive_datagram(d, NOW)),
            lambda r: mutate_bytes(r, seeds, 400),
            seeds=seeds,
        )
        for role in Role
    ]


def _launcher_targets() -> list[Target]:
    from drivers.launcher import LauncherCanCodec, LauncherSerialCodec
    from tests.unit.test_launcher_codec import KEYS, LID, ack, can_pair, cancel, cue, ser_pair, status

    gw_can, dev_can = can_pair()
    gw_ser, dev_ser = ser_pair()
    to_device = [cue(), cancel()]
    to_gateway = [ack(), status()]
    can_seeds = [gw_can.send(e) for e in to_device] + [dev_can.send(e) for e in to_gateway]
    ser_seeds = [gw_ser.send(e) for e in to_device] + [dev_ser.send(e) for e in to_gateway]
    ids = sorted({f.arbitration_id for s in can_seeds for f in s})
    out = []
    for role in Role:
        can_kw: dict[str, Any] = {"launcher_id": LID, "keys": KEYS if role is Role.GATEWAY else None}
        out += [
            Target(
                f"launcher_can/{role.value}",
                lambda role=role, kw=can_kw: LauncherCanCodec(role, **kw),
                _can_feed,
                lambda r: mutate_frames(r, can_seeds, ids),
                reset_every=1000,
                seeds=can_seeds,
            ),
            Target(
                f"launcher_serial/{role.value}",
                lambda role=role, kw=can_kw: LauncherSerialCodec(role, **kw),
                _stream_drain,
                lambda r: mutate_bytes(r, ser_seeds, 300),
                reset_every=1000,
                seeds=ser_seeds,
            ),
        ]
    return out


def _framing_targets() -> list[Target]:
    from drivers.framing import Deframer, encode_frame

    rng = random.Random(3)
    seeds = [encode_frame(rng.randbytes(n)) for n in (1, 10, 60, 200)]
    return [
        Target(
            "framing/-",
            lambda: Deframer(256),
            lambda c, d: list(c.feed(d)) + (c.close() if not d else []),
            lambda r: mutate_bytes(r, seeds, 600),
            reset_every=1000,
            seeds=seeds,
        )
    ]


def targets() -> list[Target]:
    """Every codec and role, in a fixed order."""
    return [
        *_serial_radar_targets(),
        *_can_radar_targets(),
        *_asterix_targets(),
        *_nmea_targets(),
        *_dis_targets(),
        *_launcher_targets(),
        *_framing_targets(),
    ]
