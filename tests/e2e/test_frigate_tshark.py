"""Independent check of the emulator's live traffic: Wireshark's ASTERIX dissector
(tshark) and the gateway's codec read the same captured datagrams to the same values."""

from __future__ import annotations

import contextlib
import math
import shutil
import socket
import time
from pathlib import Path

import numpy as np
import pytest

from drivers.asterix import AsterixCodec, SystemTrackBatch, TargetReportBatch
from drivers.base import Rejected, Role
from sim_devices.frigate_emulator import start_frigate_emulator
from tests.unit.test_tshark_crosscheck import tshark_fields, write_pcap

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        shutil.which("tshark") is None, reason="tshark not installed (apt-get install -y tshark)"
    ),
]
SCENARIO = Path(__file__).resolve().parent.parent / "data" / "frigate.toml"
NM = 1852.0
FT = 0.3048


def capture(seconds: float) -> list[bytes]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(0.2)
        port = sock.getsockname()[1]
        emu = start_frigate_emulator(["--scenario", str(SCENARIO), "--asterix", f"127.0.0.1:{port}"])
        out: list[bytes] = []
        try:
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                with contextlib.suppress(TimeoutError):
                    out.append(sock.recv(65536))
        finally:
            emu.stop()
    return out


def floats(cell: str) -> list[float]:
    return [float(v) for v in cell.split(";")] if cell else []


def test_emulator_traffic_decodes_the_same_in_wireshark(tmp_path: Path) -> None:
    datagrams = capture(2.5)
    assert len(datagrams) >= 4
    codec = AsterixCodec(Role.GATEWAY)
    t_rx = time.time_ns()
    plots, tracks = [], []
    for dg in datagrams:
        evs = codec.receive_datagram_batch(dg, t_rx)
        assert not [e for e in evs if isinstance(e, Rejected)]
        plots.append(next((e.rows for e in evs if isinstance(e, TargetReportBatch)), None))
        tracks.append(next((e.rows for e in evs if isinstance(e, SystemTrackBatch)), None))
    pcap = tmp_path / "frigate.pcap"
    write_pcap(pcap, [(8600, dg) for dg in datagrams])
    rows = tshark_fields(
        pcap,
        ["asterix.048_040_RHO", "asterix.048_040_THETA", "asterix.048_161_TRN", "asterix.048_110_3DH",
         "asterix.048_200_GSP", "asterix.062_040_VALUE", "asterix.062_105_LAT", "asterix.062_105_LON",
         "asterix.062_185_VX", "asterix.062_185_VY", "asterix.062_130_VALUE"],
    )  # fmt: skip
    assert len(rows) == len(datagrams)
    n48 = n62 = 0
    for row, p, t in zip(rows, plots, tracks, strict=True):
        if p is not None:
            n48 += len(p)
            assert floats(row[0]) == pytest.approx((p["range_m"] / NM).tolist(), abs=1 / 256)
            theta = np.degrees(p["azimuth_rad"])
            d = (np.array(floats(row[1])) - theta + 180.0) % 360.0 - 180.0
            assert np.abs(d).max() < 360 / 2**16 + 1e-9
            assert [int(v, 0) for v in row[2].split(";")] == p["track_number"].tolist()
            h = p["height_m"][np.isfinite(p["height_m"])]
            assert floats(row[3]) == pytest.approx((h / FT).tolist(), abs=25.0)
            gs = p["ground_speed_mps"][np.isfinite(p["ground_speed_mps"])]
            assert floats(row[4]) == pytest.approx((gs / NM).tolist(), abs=2**-14)
        if t is not None:
            n62 += len(t)
            assert [int(v, 0) for v in row[5].split(";")] == t["track_number"].tolist()
            assert floats(row[6]) == pytest.approx(np.degrees(t["lat_rad"]).tolist(), abs=180 / 2**25)
            assert floats(row[7]) == pytest.approx(np.degrees(t["lon_rad"]).tolist(), abs=180 / 2**25)
            assert floats(row[8]) == pytest.approx(t["vx_mps"].tolist(), abs=0.25)
            assert floats(row[9]) == pytest.approx(t["vy_mps"].tolist(), abs=0.25)
            alt = t["geo_alt_m"][np.isfinite(t["geo_alt_m"])]
            assert floats(row[10]) == pytest.approx((alt / FT).tolist(), abs=6.25)
    assert n48 >= 4
    assert n62 >= 4
    assert not math.isnan(n48)
