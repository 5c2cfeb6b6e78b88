"""Device-side encoding of ASTERIX records with libasterix (docs/icd/asterix.md).

The emulator's rate is far below the gateway's decode budget, so encoding
goes through libasterix's record constructors as they are. We hand it raw
integers that we scale and range-check ourselves with the LSBs libasterix
publishes: libasterix would silently wrap an out-of-range value, and an
emulator that sends a wrapped position is worse than one that refuses.
"""

from __future__ import annotations

import math
from typing import Any

from drivers.asterix import timeofday
from drivers.asterix.events import ServiceMessage034, ServiceMessage065, SystemTrack062, TargetReport048
from drivers.asterix.items import DEG, FL_M, FT_M, I062_130_FT, I062_136_FL, NM_M, lsb
from hilgw.errors import LocalProtocolError


def _raw(value: float, k: float, bits: int, signed: bool, field: str) -> int:
    """Scale ``value`` by LSB ``k`` to a ``bits``-wide two's-complement/unsigned raw field."""
    r = round(value / k)
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    if not lo <= r <= hi:
        raise LocalProtocolError(f"{field}={value} is outside the item's range", field=field, value=value)
    return r & ((1 << bits) - 1)


#: I048/020 first octet as libasterix's 7 data bits: TYP(3) SIM RDP SPI RAB.
_I048_020_PSR = 1 << 4


def _within(value: float, limits: tuple[float, float], field: str, item: str) -> float:
    """``value`` if the standard's range of ``item`` holds it, else LocalProtocolError."""
    lo, hi = limits
    if not lo - 1e-9 <= value <= hi + 1e-9:  # slack for the m -> ft/FL division only
        raise LocalProtocolError(
            f"{field}: {item} holds {lo:g}..{hi:g}, not {value:g} (omit the item)", field=field, value=value
        )
    return value


def _angle(value: float, k: float, bits: int) -> int:
    # Azimuths and headings wrap (0..360° maps onto the whole unsigned field).
    return round((value % (2 * math.pi)) / k) % (1 << bits)


def _uint(value: int, bits: int, field: str) -> int:
    if not 0 <= value < (1 << bits):
        raise LocalProtocolError(f"{field}={value} does not fit in {bits} bits", field=field, value=value)
    return value


def _sac_sic(sac: int, sic: int) -> tuple[tuple[str, int], tuple[str, int]]:
    return (("SAC", _uint(sac, 8, "sac")), ("SIC", _uint(sic, 8, "sic")))


class Encoder:
    """Builds libasterix records from events, for one set of category editions."""

    def __init__(self, specs: dict[int, Any]) -> None:
        self.specs = specs
        s62, s48 = specs[62], specs[48]
        self.k062 = {
            "lat": lsb(s62, "105", "LAT") * DEG,
            "xy": lsb(s62, "100", "X"),
            "v": lsb(s62, "185", "VX"),
            "fl": lsb(s62, "136") * FL_M,
            "alt": lsb(s62, "130") * FT_M,
            "hei": lsb(s62, "340", "HEIGHT") * FT_M,
            "apc": lsb(s62, "500", "APC", "X"),
            "atv": lsb(s62, "500", "ATV", "X"),
        }
        self.k048 = {
            "rho": lsb(s48, "040", "RHO") * NM_M,
            "theta": lsb(s48, "040", "THETA") * DEG,
            "h": lsb(s48, "110", "3DH") * FT_M,
            "gsp": lsb(s48, "200", "GSP") * NM_M,
            "hdg": lsb(s48, "200", "HDG") * DEG,
        }
        self.k034 = lsb(specs[34], "020") * DEG

    def record(self, ev: object) -> tuple[int, Any]:
        """(category, libasterix record) for one event."""
        if isinstance(ev, SystemTrack062):
            return 62, self._r062(ev)
        if isinstance(ev, TargetReport048):
            return 48, self._r048(ev)
        if isinstance(ev, ServiceMessage034):
            return 34, self._r034(ev)
        if isinstance(ev, ServiceMessage065):
            return 65, self._r065(ev)
        raise LocalProtocolError(f"cannot encode {type(ev).__name__} as ASTERIX", value=ev)

    def _r062(self, ev: SystemTrack062) -> Any:
        k = self.k062
        items: dict[str, Any] = {
            "010": _sac_sic(ev.sac, ev.sic),
            "040": _uint(ev.track_number, 16, "track_number"),
            "070": timeofday.to_raw(ev.t_ns),
        }
        if ev.lat_rad is not None and ev.lon_rad is not None:
            items["105"] = (
                ("LAT", _raw(ev.lat_rad, k["lat"], 32, True, "lat_rad")),
                ("LON", _raw(ev.lon_rad, k["lat"], 32, True, "lon_rad")),
            )
        if ev.x_m is not None and ev.y_m is not None:
            items["100"] = (
                ("X", _raw(ev.x_m, k["xy"], 24, True, "x_m")),
                ("Y", _raw(ev.y_m, k["xy"], 24, True, "y_m")),
            )
        if ev.vx_mps is not None and ev.vy_mps is not None:
            items["185"] = (
                ("VX", _raw(ev.vx_mps, k["v"], 16, True, "vx_mps")),
                ("VY", _raw(ev.vy_mps, k["v"], 16, True, "vy_mps")),
            )
        if ev.flight_level_m is not None:
            _within(ev.flight_level_m / FL_M, I062_136_FL, "flight_level_m", "I062/136")
            items["136"] = _raw(ev.flight_level_m, k["fl"], 16, True, "flight_level_m")
        if ev.geo_alt_m is not None:
            _within(ev.geo_alt_m / FT_M, I062_130_FT, "geo_alt_m", "I062/130")
            items["130"] = _raw(ev.geo_alt_m, k["alt"], 16, True, "geo_alt_m")
        acc: dict[str, Any] = {}
        if ev.sigma_x_m is not None or ev.sigma_y_m is not None:
            acc["APC"] = (
                ("X", _raw(ev.sigma_x_m or 0.0, k["apc"], 16, False, "sigma_x_m")),
                ("Y", _raw(ev.sigma_y_m or 0.0, k["apc"], 16, False, "sigma_y_m")),
            )
        if ev.sigma_vx_mps is not None or ev.sigma_vy_mps is not None:
            acc["ATV"] = (
                ("X", _raw(ev.sigma_vx_mps or 0.0, k["atv"], 8, False, "sigma_vx_mps")),
                ("Y", _raw(ev.sigma_vy_mps or 0.0, k["atv"], 8, False, "sigma_vy_mps")),
            )
        if acc:
            items["500"] = acc
        if ev.measured_height_m is not None:
            # I062/340 HEIGHT: the 3-D radar's measured height, s16 of 25 ft with no
            # range of its own in the standard (ballistic targets above I062/130's).
            items["340"] = {"HEIGHT": _raw(ev.measured_height_m, k["hei"], 16, True, "measured_height_m")}
        # I062/080 as FX groups of 7 data bits: group 1 is MON SPI MRH SRC(3) CNF;
        # SIM, TSE bits 7, 6 of group 2; CST bit 7 of group 4 (CAT062 ed. 1.21).
        # MRH (geometric altitude more reliable) when I062/130 is sent; SRC names
        # I062/130's source, 0 ("no source") when it is absent (ed. 1.21 I062/080
        # notes 18-19). MON (the group's top bit) is 1 for a track built from one
        # sensor only, 0 for a multisensor track.
        src = ev.altitude_source if ev.geo_alt_m is not None else 0
        groups = [
            (0x40 if ev.monosensor else 0)
            | (0x10 if ev.geo_alt_m is not None else 0)
            | (src << 1)
            | (0x01 if ev.tentative else 0),
            (0x40 if ev.simulated else 0) | (0x20 if ev.ended else 0),
            0,
            0,
        ]
        n = 4 if ev.coasting else (2 if groups[1] else 1)
        if ev.coasting:
            groups[3] = 0x40
        items["080"] = tuple(groups[:n])
        return self.specs[62].cv_record.create(items)

    def _r048(self, ev: TargetReport048) -> Any:
        k = self.k048
        items: dict[str, Any] = {
            "010": _sac_sic(ev.sac, ev.sic),
            "140": timeofday.to_raw(ev.t_ns),
            # I048/020 (mandatory, CAT048 ed. 1.32): one octet, TYP=1 "single PSR
            # detection" (the emulated radar is a primary 3-D radar), SIM RDP SPI RAB 0.
            "020": (_I048_020_PSR,),
            "040": (
                ("RHO", _raw(ev.range_m, k["rho"], 16, False, "range_m")),
                ("THETA", _angle(ev.azimuth_rad, k["theta"], 16)),
            ),
        }
        if ev.height_m is not None:
            items["110"] = (0, ("3DH", _raw(ev.height_m, k["h"], 14, True, "height_m")))
        if ev.track_number is not None:
            items["161"] = (0, ("TRN", _uint(ev.track_number, 12, "track_number")))
        if ev.ground_speed_mps is not None and ev.heading_rad is not None:
            items["200"] = (
                ("GSP", _raw(ev.ground_speed_mps, k["gsp"], 16, False, "ground_speed_mps")),
                ("HDG", _angle(ev.heading_rad, k["hdg"], 16)),
            )
        return self.specs[48].cv_record.create(items)

    def _r034(self, ev: ServiceMessage034) -> Any:
        items: dict[str, Any] = {
            "000": _uint(ev.message_type, 8, "message_type"),
            "010": _sac_sic(ev.sac, ev.sic),
            "030": timeofday.to_raw(ev.t_ns),
        }
        if ev.sector_azimuth_rad is not None:
            items["020"] = _angle(ev.sector_azimuth_rad, self.k034, 8)
        return self.specs[34].cv_record.create(items)

    def _r065(self, ev: ServiceMessage065) -> Any:
        items: dict[str, Any] = {
            "000": _uint(ev.message_type, 8, "message_type"),
            "010": _sac_sic(ev.sac, ev.sic),
            "015": _uint(ev.service_id, 8, "service_id"),
            "030": timeofday.to_raw(ev.t_ns),
        }
        if ev.batch_number is not None:
            items["020"] = _uint(ev.batch_number, 8, "batch_number")
        if ev.nogo is not None:
            items["040"] = _uint(ev.nogo, 2, "nogo") << 6  # NOGO: the 2 top bits of I065/040
        return self.specs[65].cv_record.create(items)
