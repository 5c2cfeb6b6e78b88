"""Own-ship store: NMEA merge, interpolation at report times, staleness, uncertainty."""

from __future__ import annotations

import math

import numpy as np
import pymap3d
import pytest

from drivers.base import Role
from drivers.nmea import NmeaCodec, OwnShipFix
from gateway.bus import Topic
from gateway.config import OwnShipConfig, parse_config
from gateway.devices.base import DriverContext
from gateway.devices.ownship import NmeaDriver, OwnShipStore
from gateway.health import DeviceStats

T0 = 1_700_000_000_000_000_000
S = 1_000_000_000
DEG = math.pi / 180


def gga(t: int, lat: float, lon: float, hdop: float = 1.0, quality: int = 1) -> OwnShipFix:
    return OwnShipFix("GGA", "GP", t, t, lat_rad=lat * DEG, lon_rad=lon * DEG, alt_msl_m=0.0, geoid_sep_m=0.0,
                      fix_quality=quality, num_sats=10, hdop=hdop)  # fmt: skip


def store(**kw: object) -> OwnShipStore:
    return OwnShipStore(OwnShipConfig(source="nav", **kw))  # type: ignore[arg-type]


def test_position_is_interpolated_between_fixes() -> None:
    s = store()
    s.update(gga(T0, 45.0, -30.0))
    s.update(gga(T0 + 2 * S, 45.002, -30.0))
    st = s.states_at(np.array([T0 + S], np.int64))
    assert st.valid[0]
    assert math.degrees(st.lat[0]) == pytest.approx(45.001, abs=1e-9)
    want = pymap3d.geodetic2ecef(45.001, -30.0, 0.0)
    assert np.allclose(st.pos[0], want, atol=1e-3)


def test_heading_interpolates_the_short_way_across_north() -> None:
    s = store()
    s.update(gga(T0, 45.0, -30.0))
    s.update(OwnShipFix("HDT", "HE", T0, T0, heading_rad=359.0 * DEG))
    s.update(OwnShipFix("HDT", "HE", T0 + S, T0 + S, heading_rad=1.0 * DEG))
    st = s.states_at(np.array([T0 + S // 2], np.int64))
    assert math.degrees(st.att[0, 0]) % 360.0 == pytest.approx(0.0, abs=1e-6)


def test_dead_reckoning_and_stale_limit() -> None:
    s = store(max_age_s=2.0)
    s.update(gga(T0, 45.0, -30.0))
    s.update(OwnShipFix("VTG", "GP", T0, T0, course_rad=0.0, speed_mps=10.0))  # due north
    st = s.states_at(np.array([T0 + S, T0 + 3 * S], np.int64))
    moved = np.linalg.norm(st.pos[0] - np.array(pymap3d.geodetic2ecef(45.0, -30.0, 0.0)))
    assert moved == pytest.approx(10.0, rel=0.01)
    assert st.valid.tolist() == [True, False]
    # Uncertainty grows with the extrapolation: σ_v·Δt added in quadrature.
    assert np.trace(st.pos_cov[1]) > np.trace(st.pos_cov[0])


def test_hdop_scales_horizontal_sigma_and_no_fix_is_ignored() -> None:
    s = store(uere_m=4.0)
    s.update(gga(T0, 45.0, -30.0, hdop=2.0))
    s.update(gga(T0 + S, 46.0, -30.0, quality=0))
    assert s.fixes_invalid == 1
    st = s.states_at(np.array([T0], np.int64))
    # Horizontal variance 2 x (2.0 * 4.0)^2 plus vertical 5^2 (default).
    assert np.trace(st.pos_cov[0]) == pytest.approx(2 * 64.0 + 25.0, rel=1e-6)
    assert math.degrees(st.lat[0]) == pytest.approx(45.0)


def test_no_fix_gives_invalid_states() -> None:
    st = store().states_at(np.array([T0], np.int64))
    assert not st.valid.any()


def test_fixed_own_ship_never_goes_stale() -> None:
    s = OwnShipStore(OwnShipConfig(lat_deg=10.0, lon_deg=20.0, heading_deg=90.0))
    st = s.states_at(np.array([T0, T0 + 10_000 * S], np.int64))
    assert st.valid.all()
    assert np.allclose(st.att[:, 0], math.pi / 2)


def test_nmea_driver_counts_sentences_and_rejects() -> None:
    cfg = parse_config(
        {"devices": [{"id": "nav", "protocol": "nmea", "transport": {"kind": "udp", "bind_port": 0}}]}
    )
    dev = cfg.devices[0]
    stats = DeviceStats("nav", "nmea", "udp")
    ctx = DriverContext("gw", Topic("r"), Topic("raw"), stats)
    s = store()
    drv = NmeaDriver(dev, ctx, s)
    enc = NmeaCodec(Role.DEVICE)
    dec = NmeaCodec(Role.GATEWAY)
    good = enc.send(gga(T0, 45.0, -30.0))
    bad = good[:-4] + (b"00" if good[-4:-2] != b"00" else b"11") + b"\r\n"  # wrong checksum
    body = b"GPZDA,120000.00,01,01,2024,00,00"
    cs = 0
    for c in body:
        cs ^= c
    other = b"$" + body + b"*%02X\r\n" % cs  # valid, but not a sentence we read
    drv.handle(dec.receive_datagram(good + bad + other, T0), T0)
    assert stats.frames_in == 3
    assert stats.reports_out == 1
    assert dict(stats.drops) == {"checksum": 1, "unknown_sentence": 1}
    assert s.has_position


def test_consumer_parameters_win_whichever_device_is_built_first() -> None:
    from gateway.config import OwnShipConfig
    from gateway.devices.ownship import OwnShipRegistry

    consumer = OwnShipConfig(source="nav", lever_arm_m=[1.0, 2.0, 25.0])
    for order in ("nmea-first", "asterix-first"):
        reg = OwnShipRegistry()
        if order == "nmea-first":
            reg.for_source("nav")  # the NMEA driver asks without parameters
        store = reg.for_source("nav", consumer)
        assert reg.for_source("nav") is store
        assert list(store.config.lever_arm_m) == [1.0, 2.0, 25.0], order
