"""A whole gateway with a partner feed (docs/partners.md): a marked radar's
confirmed track reaches the partner's topic on a real mosquitto, quantised
and pseudonymous; an unmarked radar's never does; the TrackBatch carries the
markings; the release journal verifies and holds the digest of what left."""

from __future__ import annotations

import asyncio
import hashlib
import time
from pathlib import Path

import aiomqtt
import pytest

from drivers.base import Role
from drivers.serial_radar import SerialRadarCodec
from gateway.config import parse_config
from gateway.cue.audit import read_records, verify_file
from gateway.supervisor import Gateway
from gateway.transports import memory_registry
from hilgw.v1 import partner_pb2, track_pb2
from tests.conftest import Mosquitto
from tests.unit.test_supervisor import reports
from tests.waiting import eventually

pytestmark = pytest.mark.e2e


def radar(
    dev_id: str, link: str, sensor: int, lat: float, markings: dict[str, object] | None
) -> dict[str, object]:
    d: dict[str, object] = {
        "id": dev_id,
        "protocol": "serial_radar",
        "wire_sensor_id": sensor,
        "transport": {"kind": "memory", "name": link},
        "site": {"lat_deg": lat, "lon_deg": 10.0, "alt_m": 20.0},
    }
    if markings is not None:
        d["markings"] = markings
    return d


async def test_gateway_releases_only_marked_sources(mosquitto: Mosquitto, tmp_path: Path) -> None:
    links = ("partner-gw-a", "partner-gw-b")
    audit = tmp_path / "release.log"
    cfg = parse_config(
        {
            "gateway_id": "site-1",
            "mqtt": {"enabled": False},
            "fusion": {"publish_hz": 20.0},
            "devices": [
                radar(
                    "radar-a",
                    links[0],
                    7,
                    54.0,
                    {"classification": "UNCLASSIFIED", "releasable_to": ["alpha"]},
                ),
                radar("radar-b", links[1], 8, 56.0, None),
            ],
            "partners": [
                {
                    "id": "alpha",
                    "release_as": "nation-x",
                    "audit_log": str(audit),
                    "broker": {"port": mosquitto.port},
                    "profile": {"max_rate_hz": 10, "position_quantum_m": 10.0},
                }
            ],
        }
    )
    try:
        async with (
            aiomqtt.Client("127.0.0.1", mosquitto.port) as partner,
            Gateway(cfg) as gw,
        ):
            await partner.subscribe("partners/alpha/#", qos=1)
            tracks = gw.tracks.subscribe("test")
            ends = []
            for link in links:
                _, end = memory_registry.link(link)
                await end.open()
                ends.append(end)
            codecs = [SerialRadarCodec(Role.DEVICE, sensor_id=s) for s in (7, 8)]
            got: list[partner_pb2.PartnerPicture] = []
            payloads: list[bytes] = []
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and not any(len(p.track_ref) for p in got):
                now = time.time_ns()
                for end, codec, tid in zip(ends, codecs, (11, 12), strict=True):
                    await end.write(codec.encode_track_batch(reports(1, now, track_id=tid)))
                try:
                    async with asyncio.timeout(0.1):
                        msg = await anext(partner.messages)
                except TimeoutError:
                    continue
                if str(msg.topic).endswith("/picture"):
                    payloads.append(bytes(msg.payload))  # type: ignore[arg-type]
                    got.append(partner_pb2.PartnerPicture.FromString(payloads[-1]))
            released = [p for p in got if len(p.track_ref)]
            assert released, "no picture with a track reached the partner"
            # Two confirmed tracks in the picture (radar-a's and radar-b's); only radar-a's leaves.
            assert max(len(p.track_ref) for p in got) == 1
            pic = released[-1]
            assert pic.releasing_party == "nation-x"
            assert pic.position_quantum_m == 10.0
            assert len(pic.vx_q) == 0  # velocity not in the default profile

            seen: list[track_pb2.TrackBatch] = []
            await eventually(lambda: any(len(b.tracks) == 2 for b in seen.extend(tracks.get_all()) or seen))
            marks = {
                c.sensor_id: (c.markings.classification, list(c.markings.releasable_to))
                for t in seen[-1].tracks
                for c in t.contributors
            }
            assert marks == {"radar-a": (1, ["alpha"]), "radar-b": (0, [])}
            feed = gw.partner_feeds["alpha"]
            assert feed.withheld["sources"] + feed.withheld["classification"] > 0
    finally:
        for link in links:
            memory_registry.forget(link)
    assert verify_file(audit).ok
    digests = {r["data"]["sha256"] for r in read_records(audit) if r["kind"] == "release"}
    assert hashlib.sha256(payloads[-1]).hexdigest() in digests
