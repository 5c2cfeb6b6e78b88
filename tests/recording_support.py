"""A small but real hilgw recording, written without a gateway: the run
metadata of a one-radar config, the radar's wire frames as raw chunks and a
TrackBatch per step (used by tests/unit/test_recording_damage.py and
benchmarks/fuzz_recordings.py)."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np

from drivers.base import Role
from drivers.radar import TRACK_BATCH_DTYPE
from drivers.serial_radar import SerialRadarCodec
from gateway.config import parse_config
from gateway.recording import TOPIC_TRACKS, McapParts, run_metadata, topic_raw
from hilgw.v1 import recording_pb2, track_pb2

__all__ = ["CORRUPTIONS", "corrupt", "make_recording"]

CORRUPTIONS = ("bit_flips", "truncate", "splice_duplicate", "splice_swap", "splice_drop", "splice_foreign")

T0 = 1_800_000_000_000_000_000


def _scan(t_ns: int, k: int) -> np.ndarray:
    arr = np.zeros(3, TRACK_BATCH_DTYPE)
    i = np.arange(3)
    arr["sensor_track_id"] = 10 + i
    arr["sensor_time_ns"] = t_ns
    arr["range_m"] = 40_000.0 + 3_000.0 * i - 150.0 * k
    arr["azimuth_rad"] = 0.3 + 0.2 * i
    arr["elevation_rad"] = 0.05
    arr["sigma_range_m"] = 10.0
    arr["sigma_azimuth_rad"] = 1e-3
    arr["sigma_elevation_rad"] = 1e-3
    arr["range_rate_mps"] = -300.0
    arr["rates_valid"] = True
    arr["sigma_range_rate_mps"] = 1.0
    arr["sigma_azimuth_rate_radps"] = 1e-4
    arr["sigma_elevation_rate_radps"] = 1e-4
    arr["quality"] = 0.9
    return arr


def make_recording(directory: Path, scans: int = 40, chunk_size: int = 2048, t0: int = T0) -> Path:
    """One closed part of ``scans`` radar scans (several chunks); its path."""
    cfg = parse_config(
        {
            "gateway_id": "rec",
            "mqtt": {"enabled": False},
            "devices": [
                {
                    "id": "radar-1",
                    "protocol": "serial_radar",
                    "wire_sensor_id": 7,
                    "transport": {"kind": "memory", "name": "rec"},
                    "site": {"lat_deg": 54.0, "lon_deg": 10.0, "alt_m": 20.0},
                }
            ],
        }
    )
    parts = McapParts(
        directory / "run.mcap", run_metadata(cfg, cfg.devices), 1 << 30, None, chunk_size=chunk_size
    )
    codec = SerialRadarCodec(Role.DEVICE, sensor_id=7)
    for k in range(scans):
        t = t0 + k * 200_000_000
        frame = recording_pb2.RawFrame(
            device_id="radar-1",
            transport="serial",
            receive_time_ns=t,
            data=codec.encode_track_batch(_scan(t, k)),
            sequence=k,
        )
        batch = track_pb2.TrackBatch(gateway_id="rec", batch_sequence=k + 1, time_ns=t + 100_000_000)
        parts.write([(topic_raw("radar-1"), frame, t, k), (TOPIC_TRACKS, batch, t + 100_000_000, k)])
    parts.close({"dropped": '{"raw": 0, "tracks": 0}'})
    return parts.files[0]


def corrupt(data: bytes, kind: str, rng: random.Random, foreign: bytes = b"") -> bytes:
    """``data`` (a sound part) damaged one way: flipped bits, cut short, or
    whole chunks duplicated, swapped, dropped or taken from ``foreign``."""
    import tempfile

    from gateway.recording_check import check_part

    buf = bytearray(data)
    if kind == "bit_flips":
        for _ in range(rng.randint(1, 8)):
            i = rng.randrange(len(buf))
            buf[i] ^= 1 << rng.randrange(8)
        return bytes(buf)
    if kind == "truncate":
        return bytes(buf[: rng.randrange(len(buf))])
    with tempfile.NamedTemporaryFile(suffix=".mcap") as f:
        f.write(data)
        f.flush()
        spans = check_part(Path(f.name)).spans
    chunks = [(a, b) for k, a, b in spans if k == "Chunk"]
    a0, a1 = rng.choice(chunks)
    if kind == "splice_duplicate":
        b0, b1 = rng.choice(chunks)
        return bytes(buf[:b1] + buf[a0:a1] + buf[b1:])
    if kind == "splice_swap":
        (a0, a1), (b0, b1) = sorted(rng.sample(chunks, 2))
        return bytes(buf[:a0] + buf[b0:b1] + buf[a1:b0] + buf[a0:a1] + buf[b1:])
    if kind == "splice_drop":
        return bytes(buf[:a0] + buf[a1:])
    if kind == "splice_foreign":
        with tempfile.NamedTemporaryFile(suffix=".mcap") as f:
            f.write(foreign)
            f.flush()
            other = [(a, b) for k, a, b in check_part(Path(f.name)).spans if k == "Chunk"]
        c0, c1 = rng.choice(other)
        return bytes(buf[:a0] + foreign[c0:c1] + buf[a1:])
    raise ValueError(kind)
