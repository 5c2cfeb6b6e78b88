"""``hilgw doctor``: which ASTERIX sources a stream carries (issue 22).

An ``asterix`` device's port (or multicast group) is listened to for a short
while; every datagram is decoded with the gateway's codec and the SAC/SIC of
every record (I0xx/010) is collected with its categories. The check says
which sources were seen, which of them the config names (``[[devices.sources]]``),
which it does not (their records would be counted ``unknown_source``), and
which configured sources were silent.
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections import defaultdict

from drivers.asterix import (
    AsterixCodec,
    ServiceMessage034,
    ServiceMessage065,
    SystemTrackBatch,
    TargetReportBatch,
)
from drivers.base import Rejected, Role
from gateway.config import DeviceConfig, UdpTransportConfig
from gateway.doctor_checks import Check, Result

__all__ = ["check_asterix_sources", "sources_seen"]


def sources_seen(datagrams: list[bytes], t_rx_ns: int) -> tuple[dict[str, set[int]], int]:
    """("sac.sic" -> categories, records rejected) of some ASTERIX datagrams."""
    codec = AsterixCodec(Role.GATEWAY)
    seen: dict[str, set[int]] = defaultdict(set)
    rejected = 0
    for dg in datagrams:
        for ev in codec.receive_datagram_batch(dg, t_rx_ns):
            if isinstance(ev, TargetReportBatch | SystemTrackBatch):
                cat = 48 if isinstance(ev, TargetReportBatch) else 62
                for sac, sic in {(int(r["sac"]), int(r["sic"])) for r in ev.rows}:
                    seen[f"{sac}.{sic}"].add(cat)
            elif isinstance(ev, ServiceMessage034 | ServiceMessage065):
                seen[f"{ev.sac}.{ev.sic}"].add(34 if isinstance(ev, ServiceMessage034) else 65)
            elif isinstance(ev, Rejected):
                rejected += 1
    return dict(seen), rejected


def _listen(t: UdpTransportConfig, listen_s: float) -> list[bytes]:
    out: list[bytes] = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("" if t.group else t.bind_host, t.bind_port))
        if t.group:
            mreq = socket.inet_aton(t.group) + socket.inet_aton(t.interface)
            s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
        end = time.monotonic() + listen_s
        while (left := end - time.monotonic()) > 0:
            s.settimeout(left)
            with contextlib.suppress(TimeoutError):
                out.append(s.recv(65536))
    return out


def check_asterix_sources(dev: DeviceConfig, listen_s: float = 2.0) -> Check:
    """Listen on the device's address for ``listen_s`` and name the sources seen."""
    t = dev.transport
    name = f"asterix sources {dev.id}"
    if not isinstance(t, UdpTransportConfig):
        return Check(name, Result.SKIP, "not a UDP device")
    try:
        datagrams = _listen(t, listen_s)
    except OSError as exc:
        return Check(name, Result.SKIP, f"cannot listen: {exc.strerror}")
    if not datagrams:
        return Check(
            name,
            Result.WARN,
            f"nothing received in {listen_s:.0f} s",
            "is the feed on? (`tcpdump -ni any udp port N`)",
        )
    seen, rejected = sources_seen(datagrams, time.time_ns())
    named = {f"{s.sac}.{s.sic}": s.label for s in dev.sources}
    cats = {k: "/".join(f"CAT{c:03d}" for c in sorted(v)) for k, v in seen.items()}
    if not dev.sources:
        text = ", ".join(f"{k} {cats[k]}" for k in sorted(seen)) or "no valid record"
        many = len({k for k, v in seen.items() if v & {34, 48}}) > 1
        fix = (
            "several radars on one stream: name each in [[devices.sources]] (docs/config.md)" if many else ""
        )
        return Check(
            name, Result.WARN if many else Result.PASS, f"{len(datagrams)} datagrams; sources {text}", fix
        )
    unknown = sorted(set(seen) - set(named))
    silent = sorted(set(named) - set(seen))
    parts = [", ".join(f"{named[k]} ({k} {cats[k]})" for k in sorted(set(seen) & set(named)))]
    if unknown:
        parts.append("not configured: " + ", ".join(f"{k} {cats[k]}" for k in unknown))
    if silent:
        parts.append("silent: " + ", ".join(f"{named[k]} ({k})" for k in silent))
    if rejected:
        parts.append(f"{rejected} records rejected")
    ok = not unknown and not silent and not rejected
    fix = "" if ok else "add the unknown SAC/SIC to [[devices.sources]] or check the silent radars"
    return Check(
        name, Result.PASS if ok else Result.WARN, f"{len(datagrams)} datagrams; " + "; ".join(parts), fix
    )
