"""`hilgw doctor`: the clock check, by the kernel clock discipline (adjtimex) or SNTP (RFC 4330)."""

from __future__ import annotations

import ctypes
import ctypes.util
import socket
import struct
import time
from collections.abc import Callable

from gateway.config import TimeSyncConfig
from gateway.doctor_checks import Check, Result

__all__ = ["check_clock", "kernel_clock_state", "sntp_offset_s"]


_NTP_EPOCH_OFFSET = 2_208_988_800  # seconds from 1900-01-01 (NTP era 0) to 1970-01-01


def _ntp_to_unix(b: bytes) -> float:
    sec, frac = struct.unpack("!II", b)
    return float(sec - _NTP_EPOCH_OFFSET + frac / 2**32)


def sntp_offset_s(server: str, port: int = 123, timeout_s: float = 2.0) -> float:
    """Clock offset (server - local, seconds) from one SNTP exchange (RFC 4330 §5).

    Hand-written: one 48-byte UDP request and the four-timestamp offset formula;
    the one PyPI package for it would add a dependency for ~25 lines.
    Raises OSError on no answer or a reply that is not a usable server reply.
    """
    t1 = time.time()
    sec = int(t1) + _NTP_EPOCH_OFFSET
    transmit = struct.pack("!II", sec, int((t1 % 1) * 2**32))
    request = bytes([0x23]) + bytes(39) + transmit  # LI 0, VN 4, mode 3 (client)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout_s)
        s.sendto(request, (server, port))
        reply, _ = s.recvfrom(512)
    t4 = time.time()
    if len(reply) < 48:
        raise OSError(f"short SNTP reply ({len(reply)} bytes)")
    li, mode, stratum = reply[0] >> 6, reply[0] & 7, reply[1]
    if mode != 4 or reply[24:32] != transmit:  # must answer *our* request (§5, originate timestamp)
        raise OSError("reply is not an answer to this request")
    if stratum == 0 or li == 3:  # kiss-o'-death, or the server itself is not synchronised
        raise OSError(f"server not synchronised (stratum {stratum}, leap indicator {li})")
    t2, t3 = _ntp_to_unix(reply[32:40]), _ntp_to_unix(reply[40:48])
    return ((t2 - t1) + (t3 - t4)) / 2


class _Timex(ctypes.Structure):
    # struct timex (adjtimex(2)) up to `status`, the part we read; the fields
    # before `time` are longs on every Linux ABI, so this prefix is portable.
    _fields_ = [
        ("modes", ctypes.c_uint),
        ("offset", ctypes.c_long),
        ("freq", ctypes.c_long),
        ("maxerror", ctypes.c_long),
        ("esterror", ctypes.c_long),
        ("status", ctypes.c_int),
        ("_rest", ctypes.c_byte * 256),  # room for the rest whatever its layout
    ]


_TIME_ERROR = 5  # adjtimex return value: clock not synchronised (STA_UNSYNC)


def kernel_clock_state() -> tuple[bool, float, float]:
    """(synchronised, estimated error s, maximum error s) from adjtimex(2) with
    modes = 0 (read only; no privilege needed). Raises OSError off Linux."""
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    tx = _Timex()
    state = libc.adjtimex(ctypes.byref(tx))
    if state < 0:
        raise OSError(ctypes.get_errno(), "adjtimex failed")
    return state != _TIME_ERROR, tx.esterror / 1e6, tx.maxerror / 1e6


def check_clock(
    cfg: TimeSyncConfig, kernel: Callable[[], tuple[bool, float, float]] = kernel_clock_state
) -> Check:
    """The clock is synchronised within ``max_offset_ms`` (``kernel`` is injectable for tests)."""
    limit = cfg.max_offset_ms
    chrony = "enable a time service (`systemctl enable --now chrony`) and check `chronyc tracking`"
    if cfg.method == "ntp":
        assert cfg.server is not None  # the config model requires it
        name = f"clock vs {cfg.server}"
        try:
            offset = sntp_offset_s(cfg.server, cfg.port, cfg.timeout_s)
        except OSError as exc:
            fix = f"is {cfg.server} an NTP server reachable on UDP {cfg.port}? check the firewall"
            return Check(name, Result.FAIL, f"no usable answer: {exc}", fix)
        detail = f"offset {offset * 1e3:+.1f} ms (limit {limit:g} ms)"
        if abs(offset) * 1e3 > limit:
            return Check(name, Result.FAIL, detail, f"{chrony} with {cfg.server} as a source")
        return Check(name, Result.PASS, detail)
    name = "clock (kernel)"
    try:
        synced, est, mx = kernel()
    except (OSError, AttributeError) as exc:
        return Check(name, Result.FAIL, f"cannot read the clock state: {exc}", 'use method = "ntp"')
    detail = f"estimated error {est * 1e3:.1f} ms, maximum {mx * 1e3:.1f} ms (limit {limit:g} ms)"
    if not synced:
        return Check(name, Result.FAIL, "not synchronised", chrony)
    if est * 1e3 > limit:
        return Check(name, Result.FAIL, detail, f"{chrony}; add closer or better sources (PTP, GNSS)")
    return Check(name, Result.PASS, detail)
