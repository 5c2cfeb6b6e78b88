"""A real feed that omits optional items: decoded without rejects, reports with defaults, no NaN out.

The records are built with libasterix directly (not our encoder), with only
the category's mandatory items plus items the gateway does not read (I062/015
service id, I062/060 Mode 3/A), as an SDPS other than our emulator sends them.
"""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from drivers.asterix import AsterixCodec, SystemTrack062, TargetReport048
from drivers.asterix.codec import spec_for
from drivers.base import Rejected, Role
from gateway.bus import Topic
from gateway.config import parse_config
from gateway.devices.asterix import AsterixDriver
from gateway.devices.base import DriverContext
from gateway.health import DeviceStats
from gateway.normalise import reports_to_proto
from hilgw.v1 import report_pb2

C62, C48 = spec_for(62, (1, 21)), spec_for(48, (1, 32))
LAT = round(45.1 / 180 * 2**25)  # I062/105 LSB 180/2^25 degrees
LON = round(-30.2 / 180 * 2**25)


def sparse_datagram(t_ns: int) -> bytes:
    tod = (t_ns // 1_000_000_000 % 86400) * 128
    sid = (("SAC", 9), ("SIC", 4))
    wgs = C62.cv_record.create(
        {"010": sid, "015": 7, "040": 42, "070": tod, "080": (0,), "105": (("LAT", LAT), ("LON", LON)),
         "060": (("V", 0), ("G", 0), ("CH", 0), 0, ("MODE3A", 0o1234))}
    )  # fmt: skip
    xy = C62.cv_record.create(
        {"010": sid, "040": 43, "070": tod, "080": (0,), "100": (("X", 20_000), ("Y", -8_000))}
    )
    plot = C48.cv_record.create(
        {
            "010": (("SAC", 9), ("SIC", 3)),
            "140": tod,
            "020": (0x10,),
            "040": (("RHO", 256 * 40), ("THETA", 8192)),
        }
    )
    return b"".join(s.create(r).unparse().to_bytes() for s, r in ((C62, [wgs, xy]), (C48, [plot])))


def test_sparse_records_decode_with_optional_fields_unset() -> None:
    t = time.time_ns()
    evs = AsterixCodec(Role.GATEWAY).receive_datagram(sparse_datagram(t), t)
    assert not [e for e in evs if isinstance(e, Rejected)]
    wgs, xy, plot = evs
    assert isinstance(wgs, SystemTrack062)
    assert isinstance(xy, SystemTrack062)
    assert isinstance(plot, TargetReport048)
    assert wgs.lat_rad is not None
    assert math.degrees(wgs.lat_rad) == pytest.approx(45.1, abs=1e-5)
    for ev in (wgs, xy):
        unset = (
            ev.vx_mps,
            ev.geo_alt_m,
            ev.flight_level_m,
            ev.measured_height_m,
            ev.sigma_x_m,
            ev.sigma_vx_mps,
        )
        assert unset == (None,) * 6
    assert (xy.lat_rad, xy.x_m, xy.y_m) == (None, 10_000.0, -4_000.0)
    assert (plot.height_m, plot.track_number, plot.ground_speed_mps) == (None, None, None)


def test_sparse_system_tracks_become_reports_without_nan() -> None:
    cfg = parse_config(
        {"devices": [{"id": "sdps", "protocol": "asterix", "transport": {"kind": "udp", "bind_port": 0},
                      "asterix": {"cat062_origin": {"lat_deg": 45.0, "lon_deg": -30.0, "alt_m": 0.0}}}]}
    ).devices[0]  # fmt: skip
    stats = DeviceStats("sdps", "asterix", "udp")
    drv = AsterixDriver(
        cfg, DriverContext("gw", Topic("r"), Topic("raw"), stats), ownship=None, add_sensor=lambda g: 0
    )
    t = time.time_ns()
    (batch,) = drv.handle_datagram(sparse_datagram(t), t)
    assert stats.frames_in == 3
    assert dict(stats.drops) == {"untracked_plot": 1}  # the CAT048 plot has no I048/161
    r = batch.reports
    assert len(r) == 2
    assert np.isfinite(r.x).all()
    assert np.isfinite(r.P).all()
    msg = report_pb2.SensorReportBatch.FromString(
        reports_to_proto(r, ["sdps/cat062/9.4"], t, "gw").SerializeToString()
    )
    assert [rep.HasField("polar") for rep in msg.reports] == [False, False]
    assert all(math.isfinite(v) for rep in msg.reports for v in rep.ecef.covariance)
