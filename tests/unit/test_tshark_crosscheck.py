"""Independent check: Wireshark's ASTERIX and DIS dissectors read our bytes as we do.

Datagrams go into a pcap (Ethernet/IPv4/UDP to 127.0.0.1; ASTERIX on UDP
8600, DIS on UDP 3000) written by the small writer below, and
``tshark -T fields`` prints the dissected values. For DIS both directions are
checked: our PDUs in Wireshark, and PDUs packed by hand from the standard's
byte layout in our codec and in Wireshark.
"""

from __future__ import annotations

import math
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from drivers.asterix import AsterixCodec, SystemTrack062, TargetReport048
from drivers.base import Role
from drivers.dis import DisCodec, EntityState

TSHARK = shutil.which("tshark")
pytestmark = pytest.mark.skipif(
    TSHARK is None, reason="tshark not installed (DEBIAN_FRONTEND=noninteractive apt-get install -y tshark)"
)

T0 = 1_700_000_000_000_000_000
DEG = math.pi / 180


def _ipv4_checksum(header: bytes) -> int:
    s = sum(struct.unpack(f">{len(header) // 2}H", header))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return int(~s & 0xFFFF)


def write_pcap(path: Path, packets: list[tuple[int, bytes]]) -> None:
    """pcap (LINKTYPE_ETHERNET) of UDP datagrams 127.0.0.1:40000 -> 127.0.0.1:port."""
    out = bytearray(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
    for i, (port, payload) in enumerate(packets):
        udp = struct.pack(">HHHH", 40000, port, 8 + len(payload), 0) + payload  # checksum 0 = none (IPv4)
        ip = struct.pack(
            ">BBHHHBBH4s4s",
            0x45,
            0,
            20 + len(udp),
            i,
            0,
            64,
            17,
            0,
            bytes([127, 0, 0, 1]),
            bytes([127, 0, 0, 1]),
        )
        ip = ip[:10] + struct.pack(">H", _ipv4_checksum(ip)) + ip[12:]
        frame = bytes(6) + bytes(6) + b"\x08\x00" + ip + udp
        out += struct.pack("<IIII", 1_700_000_000 + i, 0, len(frame), len(frame)) + frame
    path.write_bytes(bytes(out))


def tshark_fields(path: Path, fields: list[str]) -> list[list[str]]:
    assert TSHARK is not None
    cmd = [
        TSHARK,
        "-r",
        str(path),
        "-d",
        "udp.port==8600,asterix",
        "-T",
        "fields",
        "-E",
        "separator=|",
        "-E",
        "occurrence=a",
        "-E",
        "aggregator=;",
    ]
    for f in fields:
        cmd += ["-e", f]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=20, check=True)
    return [line.split("|") for line in res.stdout.splitlines()]


def test_asterix_cat062_and_cat048_in_wireshark(tmp_path: Path) -> None:
    dev = AsterixCodec(Role.DEVICE)
    trk = SystemTrack062(
        7, 9, 4321, T0 + 123_000_000, lat_rad=43.5 * DEG, lon_rad=-5.25 * DEG, vx_mps=120.5, vy_mps=-33.25
    )
    plot = TargetReport048(7, 10, T0, range_m=40 * 1852.0, azimuth_rad=90 * DEG, track_number=321)
    pcap = tmp_path / "asterix.pcap"
    write_pcap(pcap, [(8600, dev.send([trk, trk])), (8600, dev.send(plot))])
    rows = tshark_fields(
        pcap,
        [
            "asterix.062_010_SAC",
            "asterix.062_040_VALUE",
            "asterix.062_105_LAT",
            "asterix.062_105_LON",
            "asterix.062_185_VX",
            "asterix.062_185_VY",
            "asterix.048_040_RHO",
            "asterix.048_040_THETA",
            "asterix.048_161_TRN",
            "asterix.048_010_SIC",
        ],
    )
    r62, r48 = rows
    assert [int(v, 0) for v in r62[0].split(";")] == [7, 7]
    assert [int(v, 0) for v in r62[1].split(";")] == [4321, 4321]
    assert float(r62[2].split(";")[0]) == pytest.approx(43.5, abs=1e-5)
    assert float(r62[3].split(";")[0]) == pytest.approx(-5.25, abs=1e-5)
    assert float(r62[4].split(";")[0]) == pytest.approx(120.5)
    assert float(r62[5].split(";")[0]) == pytest.approx(-33.25)
    assert float(r48[6]) == pytest.approx(40.0, abs=1 / 256)
    assert float(r48[7]) == pytest.approx(90.0, abs=0.006)
    assert int(r48[8], 0) == 321
    assert int(r48[9], 0) == 10


def hand_built_espdu() -> bytes:
    """IEEE 1278.1-2012 ESPDU packed field by field, independent of drivers.dis."""
    out = struct.pack(">BBBBIHBB", 7, 3, 1, 1, 0, 144, 0, 0)
    out += struct.pack(">HHHBB", 100, 200, 300, 1, 0)
    out += struct.pack(">BBHBBBB", 1, 2, 225, 1, 1, 0, 0) + bytes(8)
    out += struct.pack(">fff", 10.0, 20.0, 30.0) + struct.pack(">ddd", 1.5e6, -4.5e6, 4.2e6)
    out += struct.pack(">fff", 0.1, 0.2, 0.3) + struct.pack(">I", 0) + bytes([2]) + bytes(15) + bytes(24)
    out += bytes([1]) + b"HANDMADE".ljust(11, b"\0") + struct.pack(">I", 0)
    return out


def test_dis_both_directions(tmp_path: Path) -> None:
    codec = DisCodec(Role.DEVICE)
    ours = codec.send(
        EntityState(
            (1, 2, 3),
            force_id=2,
            entity_type=(1, 2, 225, 1, 3, 0, 0),
            location_m=(4e6, 1e6, 4.8e6),
            velocity_mps=(5.0, -6.0, 7.5),
            marking="FRIGATE",
        )
    )
    hand = hand_built_espdu()
    (ev,) = codec.receive_datagram(hand, T0)
    assert isinstance(ev, EntityState)
    assert ev.entity_id == (100, 200, 300)
    assert ev.location_m == (1.5e6, -4.5e6, 4.2e6)
    assert ev.marking == "HANDMADE"
    pcap = tmp_path / "dis.pcap"
    write_pcap(pcap, [(3000, ours), (3000, hand)])
    rows = tshark_fields(
        pcap,
        [
            "dis.proto_ver",
            "dis.pdu_type",
            "dis.pdu_length",
            "dis.entity_id_site",
            "dis.entity_id_application",
            "dis.entity_id_entity",
            "dis.force_id",
            "dis.entity_location.x",
            "dis.entity_location.y",
            "dis.entity_linear_velocity.z",
            "dis.entity_marking",
        ],
    )
    (a, b) = rows
    assert a[:7] == ["7", "1", "144", "1", "2", "3", "2"]
    assert float(a[7]) == 4e6
    assert float(a[8]) == 1e6
    assert float(a[9]) == 7.5
    assert a[10] == "FRIGATE"
    assert b[:7] == ["7", "1", "144", "100", "200", "300", "1"]
    assert float(b[7]) == ev.location_m[0]
    assert b[10] == ev.marking
