"""NMEA 0183 own-ship navigation: sans-I/O codec over pynmea2 (docs/icd/nmea.md).

Sentences read: GGA (position), VTG (course/speed over ground), HDT (true
heading) and PASHR (attitude: heading, roll, pitch, heave; the Ashtech/
Applanix/Hemisphere "RT300" form that many marine IMUs emit, which pynmea2
parses as ``ASHRATT``). pynmea2 does the sentence syntax and checksum; this
module frames lines, converts fields to SI and turns every failure into a
``Rejected`` (reasons ``checksum``, ``unknown_sentence``, ``decode``,
``too_long``).

Each sentence gives one ``OwnShipFix`` with the fields that sentence carries
(the others None); merging them into one platform state is the normaliser's
job, so the codec holds no navigation state.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pynmea2  # type: ignore[import-untyped]  # pynmea2 ships no type hints
from pynmea2.types.proprietary.ash import ASH, ASHRATT  # type: ignore[import-untyped]  # idem

from drivers.base import NEED_DATA, Rejected, Role
from hilgw.errors import LocalProtocolError, RemoteProtocolError

KNOT_MPS = 1852.0 / 3600.0
DEG = math.pi / 180.0
DAY_NS = 86_400 * 1_000_000_000
#: NMEA 0183 §5.3 limits a sentence to 82 characters with CR LF; we allow
#: proprietary overlength up to this before declaring the line garbage.
MAX_LINE = 256
MAX_RAW = 256
SENTENCES = ("GGA", "VTG", "HDT", "PASHR")


@dataclass(frozen=True, slots=True)
class OwnShipFix:
    """One navigation sentence in SI units.

    ``t_ns``: the sentence's UTC time of day resolved to a date with the
    receive time (GGA, PASHR), or the receive time for sentences without a
    time (VTG, HDT). ``lat_rad``/``lon_rad``: WGS-84. ``alt_msl_m``: antenna
    altitude above mean sea level; ``geoid_sep_m``: geoid above ellipsoid, so
    the ellipsoidal height is their sum. ``course_rad``/``heading_rad``:
    clockwise from true north. ``roll_rad``/``pitch_rad``/``heave_m``: as the
    PASHR source reports them (see docs/icd/nmea.md for the sign convention).
    """

    sentence: str
    talker: str
    t_ns: int
    t_rx_ns: int
    lat_rad: float | None = None
    lon_rad: float | None = None
    alt_msl_m: float | None = None
    geoid_sep_m: float | None = None
    fix_quality: int | None = None
    num_sats: int | None = None
    hdop: float | None = None
    course_rad: float | None = None
    speed_mps: float | None = None
    heading_rad: float | None = None
    roll_rad: float | None = None
    pitch_rad: float | None = None
    heave_m: float | None = None

    def __post_init__(self) -> None:
        if self.sentence not in SENTENCES:
            raise LocalProtocolError(
                f"sentence must be one of {SENTENCES}", field="sentence", value=self.sentence
            )


def _opt_float(s: str) -> float | None:
    if s == "":
        return None
    v = float(s)
    if not math.isfinite(v):
        raise ValueError(f"non-finite {s!r}")
    return v


def _opt_int(s: str) -> int | None:
    return None if s == "" else int(s)


def _hhmmss_ns(s: str) -> int:
    """'hhmmss.sss' -> ns since midnight (NMEA 0183 time field)."""
    if len(s) < 6 or not s[:6].isdigit():
        raise ValueError(f"bad UTC time {s!r}")
    h, m = int(s[0:2]), int(s[2:4])
    sec = Decimal(s[4:])
    if h > 23 or m > 59 or not 0 <= sec < 61:
        raise ValueError(f"bad UTC time {s!r}")
    return (h * 3600 + m * 60) * 1_000_000_000 + int(sec * 1_000_000_000)


def _nearest_day(tod_ns: int, t_rx_ns: int) -> int:
    # Same rule as ASTERIX time of day (drivers/asterix/timeofday.py): the
    # midnight that puts the stamp nearest the receive time.
    t = t_rx_ns - t_rx_ns % DAY_NS + tod_ns
    if t - t_rx_ns > DAY_NS // 2:
        t -= DAY_NS
    elif t_rx_ns - t > DAY_NS // 2:
        t += DAY_NS
    return t


def _latlon(value: str, hemi: str, deg_digits: int, pos: str, neg: str) -> float | None:
    """NMEA (d)ddmm.mmmm + hemisphere -> radians."""
    if value == "" and hemi == "":
        return None
    if hemi not in (pos, neg) or len(value) < deg_digits + 2:
        raise ValueError(f"bad coordinate {value!r},{hemi!r}")
    deg = int(value[:deg_digits])
    minutes = float(value[deg_digits:])
    if not 0.0 <= minutes < 60.0:
        raise ValueError(f"bad minutes in {value!r}")
    v = (deg + minutes / 60.0) * DEG
    return -v if hemi == neg else v


class NmeaCodec:
    """NMEA 0183 codec with a role: a byte stream (serial, TCP) or datagrams (UDP).

    Stream use (h11 style): ``receive_data(bytes, t_ns)`` then
    ``next_event()`` until it returns ``NEED_DATA``. Datagram use:
    ``receive_datagram(bytes, t_ns)`` returns the events of the datagram's
    complete lines. Device role: ``send(OwnShipFix)`` renders one sentence
    with its checksum and CR LF.
    """

    def __init__(self, role: Role, *, source: str = "nmea", talker: str = "GP") -> None:
        self.role = role
        self.source = source
        self.talker = talker
        self._buf = bytearray()
        self._t_rx = 0
        self._discarding = False

    # ------------------------------------------------------------------ receive

    def receive_data(self, data: bytes, t_ns: int) -> None:
        """Append stream bytes received at UTC ``t_ns``."""
        self._buf += data
        self._t_rx = t_ns

    def next_event(self) -> OwnShipFix | Rejected | object:
        """The next event, or ``NEED_DATA`` until a whole line is buffered."""
        while True:
            nl = self._buf.find(b"\n")
            if nl < 0:
                if len(self._buf) > MAX_LINE:
                    raw = bytes(self._buf[:MAX_RAW])
                    self._buf.clear()
                    self._discarding = True  # drop the rest of this over-long line too
                    return self._reject("too_long", f"no line end within {MAX_LINE} bytes", raw)
                return NEED_DATA
            line = bytes(self._buf[:nl])
            del self._buf[: nl + 1]
            if self._discarding:
                self._discarding = False
                continue
            ev = self._line(line, self._t_rx)
            if ev is not None:
                return ev

    def receive_datagram(self, data: bytes, t_ns: int) -> list[OwnShipFix | Rejected]:
        """Events of every line in one datagram (a last line without CR LF is accepted)."""
        out: list[OwnShipFix | Rejected] = []
        for line in bytes(data).split(b"\n"):
            if len(line) > MAX_LINE:
                out.append(self._reject("too_long", f"line of {len(line)} bytes", line))
                continue
            ev = self._line(line, t_ns)
            if ev is not None:
                out.append(ev)
        return out

    def _reject(self, reason: str, msg: str, raw: bytes) -> Rejected:
        err = RemoteProtocolError(f"{self.source}: {msg}", reason=reason, value=raw[:64])
        return Rejected(err, raw[:MAX_RAW])

    def _line(self, raw: bytes, t_rx: int) -> OwnShipFix | Rejected | None:
        line = raw.strip()
        if not line:
            return None  # blank line between sentences: not a frame
        start = line.find(b"$")
        if start < 0:
            return self._reject("decode", "no '$' start delimiter", raw)
        try:
            text = line[start:].decode("ascii")
        except UnicodeDecodeError:
            return self._reject("decode", "non-ASCII bytes in sentence", raw)
        try:
            msg = pynmea2.parse(text, check=True)
        except pynmea2.ChecksumError as exc:
            return self._reject("checksum", str(exc), raw)
        except pynmea2.SentenceTypeError:
            return self._reject("unknown_sentence", f"sentence {text[1:6]!r} not handled", raw)
        except (pynmea2.ParseError, ValueError, TypeError, AttributeError) as exc:
            return self._reject("decode", str(exc), raw)
        try:
            return self._convert(msg, t_rx, raw)
        except (ValueError, TypeError, ArithmeticError, IndexError) as exc:
            return self._reject("decode", f"{type(msg).__name__}: {exc}", raw)

    def _convert(self, msg: Any, t_rx: int, raw: bytes) -> OwnShipFix | Rejected:
        d: list[str] = list(msg.data)
        if isinstance(msg, pynmea2.GGA):
            if len(d) < 12:
                raise ValueError("GGA needs 14 fields")
            sep_unit_ok = d[9] in ("M", "") and d[11] in ("M", "")
            if not sep_unit_ok:
                raise ValueError("GGA altitude units must be metres")
            return OwnShipFix(
                sentence="GGA",
                talker=msg.talker,
                t_ns=_nearest_day(_hhmmss_ns(d[0]), t_rx) if d[0] else t_rx,
                t_rx_ns=t_rx,
                lat_rad=_latlon(d[1], d[2], 2, "N", "S"),
                lon_rad=_latlon(d[3], d[4], 3, "E", "W"),
                fix_quality=_opt_int(d[5]),
                num_sats=_opt_int(d[6]),
                hdop=_opt_float(d[7]),
                alt_msl_m=_opt_float(d[8]),
                geoid_sep_m=_opt_float(d[10]),
            )
        if isinstance(msg, pynmea2.VTG):
            if len(d) < 8:
                raise ValueError("VTG needs 8 fields")
            course = _opt_float(d[0])
            kts = _opt_float(d[4])
            kmh = _opt_float(d[6])
            speed = kts * KNOT_MPS if kts is not None else (kmh / 3.6 if kmh is not None else None)
            return OwnShipFix(
                sentence="VTG",
                talker=msg.talker,
                t_ns=t_rx,
                t_rx_ns=t_rx,
                course_rad=None if course is None else course * DEG,
                speed_mps=speed,
            )
        if isinstance(msg, pynmea2.HDT):
            if len(d) < 2 or d[1] != "T":
                raise ValueError("HDT heading must be flagged T (true)")
            hdg = _opt_float(d[0])
            return OwnShipFix(
                sentence="HDT",
                talker=msg.talker,
                t_ns=t_rx,
                t_rx_ns=t_rx,
                heading_rad=None if hdg is None else hdg * DEG,
            )
        if isinstance(msg, ASHRATT):
            # data: R? time, heading, T, roll, pitch, heave, accuracies..., status.
            f = d[1:] if d and d[0] == "R" else d
            if len(f) < 6:
                raise ValueError("PASHR needs at least 6 fields")
            hdg, roll, pitch = _opt_float(f[1]), _opt_float(f[3]), _opt_float(f[4])
            return OwnShipFix(
                sentence="PASHR",
                talker="P",
                t_ns=_nearest_day(_hhmmss_ns(f[0]), t_rx) if f[0] else t_rx,
                t_rx_ns=t_rx,
                heading_rad=None if hdg is None else hdg * DEG,
                roll_rad=None if roll is None else roll * DEG,
                pitch_rad=None if pitch is None else pitch * DEG,
                heave_m=_opt_float(f[5]),
            )
        name = type(msg).__name__
        return self._reject("unknown_sentence", f"sentence {name} not handled", raw)

    # ------------------------------------------------------------------ device side

    def send(self, fix: OwnShipFix) -> bytes:
        """Render ``fix`` as its sentence (``fix.sentence``), with checksum and CR LF."""
        if self.role is not Role.DEVICE:
            raise LocalProtocolError("send is the device role's", field="role", value=self.role)
        talker = fix.talker if len(fix.talker) == 2 else self.talker
        msg: Any
        if fix.sentence == "GGA":
            msg = pynmea2.GGA(talker, "GGA", _gga_fields(fix))
        elif fix.sentence == "VTG":
            course = "" if fix.course_rad is None else f"{(fix.course_rad / DEG) % 360.0:.3f}"
            kts = "" if fix.speed_mps is None else f"{_nonneg(fix.speed_mps, 'speed_mps') / KNOT_MPS:.3f}"
            kmh = "" if fix.speed_mps is None else f"{fix.speed_mps * 3.6:.3f}"
            msg = pynmea2.VTG(talker, "VTG", (course, "T", "", "M", kts, "N", kmh, "K", "A"))
        elif fix.sentence == "HDT":
            msg = pynmea2.HDT(talker, "HDT", (_deg360(fix.heading_rad), "T"))
        else:
            fields = [
                "R",
                _hhmmss(fix.t_ns),
                _deg360(fix.heading_rad),
                "T",
                _signed(fix.roll_rad, DEG, 3),
                _signed(fix.pitch_rad, DEG, 3),
                _signed(fix.heave_m, 1.0, 3),
                "",
                "",
                "",
                "",
                "",
            ]
            msg = ASH("ASH", fields)
        return (str(msg.render(checksum=True)) + "\r\n").encode("ascii")


def _finite(v: float, name: str) -> float:
    if not math.isfinite(v):
        raise LocalProtocolError(f"{name} must be finite", field=name, value=v)
    return v


def _nonneg(v: float, name: str) -> float:
    if not (math.isfinite(v) and v >= 0.0):
        raise LocalProtocolError(f"{name} must be finite and >= 0", field=name, value=v)
    return v


def _deg360(v: float | None) -> str:
    return "" if v is None else f"{(_finite(v, 'heading_rad') / DEG) % 360.0:.3f}"


def _signed(v: float | None, k: float, nd: int) -> str:
    return "" if v is None else f"{_finite(v, 'value') / k:+.{nd}f}"


def _hhmmss(t_ns: int) -> str:
    ms = (t_ns % DAY_NS) // 1_000_000
    s, ms = divmod(ms, 1000)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    return f"{h:02d}{m:02d}{s:02d}.{ms:03d}"


def _gga_fields(fix: OwnShipFix) -> tuple[str, ...]:
    def coord(v: float | None, deg_digits: int, pos: str, neg: str) -> tuple[str, str]:
        if v is None:
            return "", ""
        a = abs(_finite(v, "lat_rad/lon_rad")) / DEG
        deg = int(a)
        minutes = (a - deg) * 60.0
        if round(minutes, 6) >= 60.0:  # 59.9999999' rounds up to the next degree
            deg, minutes = deg + 1, 0.0
        return f"{deg:0{deg_digits}d}{minutes:09.6f}", (neg if v < 0 else pos)

    lat, ns = coord(fix.lat_rad, 2, "N", "S")
    lon, ew = coord(fix.lon_rad, 3, "E", "W")

    def opt(v: float | int | None, fmt: str) -> str:
        return "" if v is None else format(v, fmt)

    return (
        _hhmmss(fix.t_ns),
        lat,
        ns,
        lon,
        ew,
        opt(fix.fix_quality, "d"),
        opt(fix.num_sats, "02d"),
        opt(fix.hdop, ".1f"),
        opt(fix.alt_msl_m, ".3f"),
        "M",
        opt(fix.geoid_sep_m, ".3f"),
        "M",
        "",
        "",
    )
