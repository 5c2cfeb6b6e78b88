"""The UAP subset the gateway reads: item offsets -> SI values (docs/icd/asterix.md).

Each ``read_*`` takes the block bytes and the {FRN: offset} map from
:func:`drivers.asterix.layout.walk_record` and returns one row (a tuple in the
field order of the category's batch dtype / event) or raises
:class:`MissingItem`. Scale factors (LSBs) are read from libasterix's
specification classes at import, so the numbers have one source; only the
unit conversions to SI are ours (1 NM = 1852 m, 1 ft = 0.3048 m, FL = 100 ft,
ICAO Annex 5).
"""

from __future__ import annotations

import math
from struct import Struct
from typing import Any

import numpy as np
import numpy.typing as npt
from asterix import base as ab

from drivers.asterix import timeofday
from drivers.asterix.events import TARGET_REPORT_DTYPE
from drivers.asterix.layout import RecordLayout, compound_offsets

NM_M = 1852.0
FT_M = 0.3048
FL_M = 100.0 * FT_M
DEG = math.pi / 180.0
NAN = math.nan

# Ranges of the height items (docs/icd/asterix.md): the standard's range where
# it gives one (CAT062 ed. 1.21: I062/130 -1,500..150,000 ft, I062/136 FL
# -15..1,500), else the field's width at its 25 ft LSB (I048/110 s14, I062/340
# HEIGHT s16). A value outside, or at the field's end (a radar that clips
# rather than omits), says only "at least this high".
I062_130_FT = (-1500.0, 150000.0)
I062_136_FL = (-15.0, 1500.0)
I048_110_MAX_M = 8191 * 25 * FT_M
I062_340_MAX_M = 32767 * 25 * FT_M

_S16 = Struct(">h")
_U16 = Struct(">H")
_2U16 = Struct(">HH")
_2S16 = Struct(">hh")
_2S32 = Struct(">ii")
_2U8 = Struct(">BB")


class MissingItem(Exception):
    """Internal: a mandatory item is absent from a record."""

    def __init__(self, item: str) -> None:
        self.item = item
        super().__init__(item)


def lsb(spec: Any, item: str, *path: str) -> float:
    """LSB of a quantity in libasterix's spec, e.g. ``lsb(Cat062, "105", "LAT")``."""
    node: Any = spec.cv_record.spec(item).cv_rule
    for name in path:
        node = node.cv_variation.spec(name)
        # Compound sub-fields are NonSpare (with a rule); group sub-fields are rules already.
        node = getattr(node, "cv_rule", node)
    var = node.cv_variation
    if issubclass(var, ab.Compound):
        raise TypeError("give the sub-field path of a compound item")
    return float(var.cv_rule.cv_content.cv_lsb)


def _s24(buf: bytes, off: int) -> int:
    return int.from_bytes(buf[off : off + 3], "big", signed=True)


def _u24(buf: bytes, off: int) -> int:
    return int.from_bytes(buf[off : off + 3], "big")


class TodRange(Exception):
    """Internal: a time of day is not below 86400 s."""

    def __init__(self, item: str, value: int) -> None:
        self.item = item
        self.value = value
        super().__init__(item)


def _time(buf: bytes, off: int, t_rx_ns: int, item: str) -> int:
    raw = _u24(buf, off)
    if raw >= timeofday.TOD_RAW_LIMIT:
        raise TodRange(item, raw)
    return timeofday.resolve(raw, t_rx_ns)


class Cat062Reader:
    """CAT062 reader. Mandatory: I062/010, 040, 070, 080 and (105 or 100)."""

    MANDATORY = ("010", "040", "070", "080")

    def __init__(self, spec: Any, layout: RecordLayout) -> None:
        f = layout.frn_of
        self.f010, self.f040, self.f070, self.f080 = (f[n] for n in self.MANDATORY)
        self.f105, self.f100, self.f185 = f["105"], f["100"], f["185"]
        self.f136, self.f130, self.f500 = f["136"], f["130"], f["500"]
        self.rule500 = layout.rules[self.f500 - 1]
        self.f340 = f["340"]
        self.rule340 = layout.rules[self.f340 - 1]
        self.k_hei = lsb(spec, "340", "HEIGHT") * FT_M
        self.k_lat = lsb(spec, "105", "LAT") * DEG
        self.k_xy = lsb(spec, "100", "X")
        self.k_v = lsb(spec, "185", "VX")
        self.k_fl = lsb(spec, "136") * FL_M
        self.k_alt = lsb(spec, "130") * FT_M
        # I062/500 sub-fields: APC is sub-FRN 1, ATV sub-FRN 6 (CAT062 ed. 1.21 §5.2.40).
        self.k_apc = lsb(spec, "500", "APC", "X")
        self.k_atv = lsb(spec, "500", "ATV", "X")

    def read(self, buf: bytes, pos: dict[int, int], t_rx_ns: int) -> tuple[Any, ...]:
        for frn, name in zip((self.f010, self.f040, self.f070, self.f080), self.MANDATORY, strict=True):
            if frn not in pos:
                raise MissingItem(name)
        o105 = pos.get(self.f105)
        o100 = pos.get(self.f100)
        if o105 is None and o100 is None:
            raise MissingItem("105|100")
        sac, sic = _2U8.unpack_from(buf, pos[self.f010])
        trk = _U16.unpack_from(buf, pos[self.f040])[0]
        t_ns = _time(buf, pos[self.f070], t_rx_ns, "070")
        lat = lon = x = y = vx = vy = fl = alt = sx = sy = svx = svy = hei = NAN
        if o105 is not None:
            la, lo = _2S32.unpack_from(buf, o105)
            lat, lon = la * self.k_lat, lo * self.k_lat
        if o100 is not None:
            x, y = _s24(buf, o100) * self.k_xy, _s24(buf, o100 + 3) * self.k_xy
        o = pos.get(self.f185)
        if o is not None:
            a, b = _2S16.unpack_from(buf, o)
            vx, vy = a * self.k_v, b * self.k_v
        o = pos.get(self.f136)
        if o is not None:
            fl = _S16.unpack_from(buf, o)[0] * self.k_fl
        o = pos.get(self.f130)
        if o is not None:
            alt = _S16.unpack_from(buf, o)[0] * self.k_alt
        o = pos.get(self.f500)
        if o is not None:
            sub = compound_offsets(buf, o, self.rule500)
            if 0 in sub:
                a, b = _2U16.unpack_from(buf, sub[0])
                sx, sy = a * self.k_apc, b * self.k_apc
            if 5 in sub:
                a, b = _2U8.unpack_from(buf, sub[5])
                svx, svy = a * self.k_atv, b * self.k_atv
        o = pos.get(self.f340)
        if o is not None:
            sub = compound_offsets(buf, o, self.rule340)
            if 2 in sub:  # HEIGHT is sub-FRN 3 of I062/340 (SID, POS, HEIGHT, MDC, MDA, TYP)
                hei = _S16.unpack_from(buf, sub[2])[0] * self.k_hei
        # I062/080 octet 1: MON SPI MRH SRC(3) CNF FX; octet 2: SIM TSE TSB FPC AFF STP KOS FX;
        # octet 3: AMA MD4(2) ME MI MD5(2) FX; octet 4: CST PSR SSR MDS ADS SUC AAC FX.
        o = pos[self.f080]
        s1 = buf[o]
        s2 = buf[o + 1] if s1 & 1 else 0
        s3 = buf[o + 2] if s2 & 1 else 0
        s4 = buf[o + 3] if s3 & 1 else 0
        return (
            sac,
            sic,
            trk,
            t_ns,
            lat,
            lon,
            x,
            y,
            vx,
            vy,
            fl,
            alt,
            sx,
            sy,
            svx,
            svy,
            bool(s1 & 0x02),
            bool(s4 & 0x80),
            bool(s2 & 0x40),
            bool(s2 & 0x80),
            hei,
            (s1 >> 2) & 0x07,  # SRC: source of I062/130
            bool(s1 & 0x80),  # MON: monosensor track
        )


class Cat048Reader:
    """CAT048 reader. Mandatory: I048/010, 140, 040."""

    MANDATORY = ("010", "140", "040")
    TOD_ITEM = "140"

    def __init__(self, spec: Any, layout: RecordLayout) -> None:
        f = layout.frn_of
        self.f010, self.f140, self.f040 = (f[n] for n in self.MANDATORY)
        self.f110, self.f161, self.f200 = f["110"], f["161"], f["200"]
        self.k_rho = lsb(spec, "040", "RHO") * NM_M
        self.k_theta = lsb(spec, "040", "THETA") * DEG
        self.k_h = lsb(spec, "110", "3DH") * FT_M
        self.k_gsp = lsb(spec, "200", "GSP") * NM_M
        self.k_hdg = lsb(spec, "200", "HDG") * DEG
        self._run_dtypes: dict[tuple[int | None, ...], np.dtype[np.void]] = {}

    def read(self, buf: bytes, pos: dict[int, int], t_rx_ns: int) -> tuple[Any, ...]:
        for frn, name in zip((self.f010, self.f140, self.f040), self.MANDATORY, strict=True):
            if frn not in pos:
                raise MissingItem(name)
        sac, sic = _2U8.unpack_from(buf, pos[self.f010])
        t_ns = _time(buf, pos[self.f140], t_rx_ns, "140")
        rho, theta = _2U16.unpack_from(buf, pos[self.f040])
        h = gsp = hdg = NAN
        trk = -1
        o = pos.get(self.f110)
        if o is not None:
            # 2 spare bits then a signed 14-bit height (I048/110).
            raw = _U16.unpack_from(buf, o)[0] & 0x3FFF
            h = (raw - 0x4000 if raw & 0x2000 else raw) * self.k_h
        o = pos.get(self.f161)
        if o is not None:
            trk = _U16.unpack_from(buf, o)[0] & 0x0FFF  # 4 spare bits, 12-bit TRN
        o = pos.get(self.f200)
        if o is not None:
            a, b = _2U16.unpack_from(buf, o)
            gsp, hdg = a * self.k_gsp, b * self.k_hdg
        return (sac, sic, t_ns, rho * self.k_rho, theta * self.k_theta, h, trk, gsp, hdg)

    def read_run(
        self, buf: bytes, off: int, length: int, count: int, rel: dict[int, int], t_rx_ns: int
    ) -> tuple[npt.NDArray[np.void], npt.NDArray[np.int64]]:
        """:meth:`read` for ``count`` records of one layout at ``buf[off:]``, ``length`` bytes apart.

        ``rel`` is the item offsets relative to the record start (the same in
        every record of the run). Returns the ``TARGET_REPORT_DTYPE`` rows and
        the raw times of day (I048/140); rows whose raw time is not below
        ``timeofday.TOD_RAW_LIMIT`` are the caller's to reject. Raises
        MissingItem like :meth:`read` (it is the same for the whole run).
        """
        for frn, name in zip((self.f010, self.f140, self.f040), self.MANDATORY, strict=True):
            if frn not in rel:
                raise MissingItem(name)
        o110, o161, o200 = rel.get(self.f110), rel.get(self.f161), rel.get(self.f200)
        key = (length, rel[self.f010], rel[self.f140], rel[self.f040], o110, o161, o200)
        dt = self._run_dtypes.get(key)
        if dt is None:
            names = ["sac", "sic", "tod", "rho", "theta"]
            # The 24-bit time of day is read as the big-endian 32-bit word ending
            # at its last octet (masked below); an item never starts at offset 0.
            offs = [
                rel[self.f010],
                rel[self.f010] + 1,
                rel[self.f140] - 1,
                rel[self.f040],
                rel[self.f040] + 2,
            ]
            fmts = ["u1", "u1", ">u4", ">u2", ">u2"]
            for name, o in (("h", o110), ("trn", o161), ("gsp", o200)):
                if o is not None:
                    names.append(name)
                    offs.append(o)
                    fmts.append(">u2")
            if o200 is not None:
                names.append("hdg")
                offs.append(o200 + 2)
                fmts.append(">u2")
            dt = np.dtype({"names": names, "formats": fmts, "offsets": offs, "itemsize": length})
            self._run_dtypes[key] = dt
        v = np.ndarray((count,), dt, buffer=buf, offset=off)
        out = np.empty(count, TARGET_REPORT_DTYPE)
        out["sac"] = v["sac"]
        out["sic"] = v["sic"]
        tod = (v["tod"] & 0xFFFFFF).astype(np.int64)
        out["t_ns"] = timeofday.resolve_array(np.minimum(tod, timeofday.TOD_RAW_LIMIT - 1), t_rx_ns)
        out["range_m"] = v["rho"] * self.k_rho
        out["azimuth_rad"] = v["theta"] * self.k_theta
        if o110 is not None:
            raw = (v["h"] & 0x3FFF).astype(np.int32)
            raw[raw & 0x2000 != 0] -= 0x4000  # signed 14-bit height (I048/110)
            out["height_m"] = raw * self.k_h
        else:
            out["height_m"] = NAN
        out["track_number"] = v["trn"] & 0x0FFF if o161 is not None else -1
        if o200 is not None:
            out["ground_speed_mps"] = v["gsp"] * self.k_gsp
            out["heading_rad"] = v["hdg"] * self.k_hdg
        else:
            out["ground_speed_mps"] = NAN
            out["heading_rad"] = NAN
        return out, tod


class Cat034Reader:
    """CAT034 reader. Mandatory: I034/000, 010, 030."""

    MANDATORY = ("000", "010", "030")

    def __init__(self, spec: Any, layout: RecordLayout) -> None:
        f = layout.frn_of
        self.f000, self.f010, self.f030 = (f[n] for n in self.MANDATORY)
        self.f020 = f["020"]
        self.k_sector = lsb(spec, "020") * DEG

    def read(self, buf: bytes, pos: dict[int, int], t_rx_ns: int) -> tuple[Any, ...]:
        for frn, name in zip((self.f000, self.f010, self.f030), self.MANDATORY, strict=True):
            if frn not in pos:
                raise MissingItem(name)
        sac, sic = _2U8.unpack_from(buf, pos[self.f010])
        t_ns = _time(buf, pos[self.f030], t_rx_ns, "030")
        o = pos.get(self.f020)
        sector = None if o is None else buf[o] * self.k_sector
        return (sac, sic, buf[pos[self.f000]], t_ns, sector)


class Cat065Reader:
    """CAT065 reader. Mandatory: I065/000, 010, 015, 030."""

    MANDATORY = ("000", "010", "015", "030")

    def __init__(self, spec: Any, layout: RecordLayout) -> None:
        f = layout.frn_of
        self.f000, self.f010, self.f015, self.f030 = (f[n] for n in self.MANDATORY)
        self.f020, self.f040 = f["020"], f["040"]

    def read(self, buf: bytes, pos: dict[int, int], t_rx_ns: int) -> tuple[Any, ...]:
        for frn, name in zip((self.f000, self.f010, self.f015, self.f030), self.MANDATORY, strict=True):
            if frn not in pos:
                raise MissingItem(name)
        sac, sic = _2U8.unpack_from(buf, pos[self.f010])
        t_ns = _time(buf, pos[self.f030], t_rx_ns, "030")
        o = pos.get(self.f040)
        nogo = None if o is None else buf[o] >> 6  # NOGO: the 2 top bits of I065/040
        o = pos.get(self.f020)
        batch = None if o is None else buf[o]
        return (sac, sic, buf[pos[self.f015]], buf[pos[self.f000]], t_ns, nogo, batch)
