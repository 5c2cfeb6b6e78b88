"""``hilgw replay --config CFG CAPTURE.pcapng``: a network capture through the
gateway's decode path and fusion engine, on the capture's clock (issue 22,
docs/recording.md "Replaying a capture").

Reader: dpkt (``dpkt.pcap.Reader`` and ``dpkt.pcapng.Reader``, pure Python,
maintained since 2009). It reads both capture formats *and* the link, IPv4
and UDP layers under the payload, which python-pcapng does not (it stops at
the block level, so the Ethernet/SLL/IP/UDP parsing would be ours to write).

Each UDP datagram goes to the device whose ``[devices.transport]`` it was
addressed to: the multicast ``group`` and ``bind_port`` of a multicast
device, else ``bind_port`` (and ``bind_host`` unless it is a wildcard). It is
fed with its capture timestamp as receive time, so ASTERIX times of day
resolve against the capture's date (across midnight as live) and nothing is
``stale`` that was fresh when captured. The engine is stepped every
``1 / fusion.publish_hz`` of capture time from the first datagram, as the
live stage steps by the wall clock. A datagram captured at the very time of
a step goes into that step.

Every packet is accounted for: ``decoded`` (fed; at least one record or
frame accepted), ``rejected`` (fed; every input rejected, by the codec's
reason), ``unmapped`` (UDP, but no device listens there, by destination),
``not_udp`` (other traffic on the wire) and ``fragment`` (an IPv4 fragment:
dumpcap on a lab LAN sees them; the gateway's socket would get the
reassembled datagram, which a capture file does not hold).
"""

from __future__ import annotations

import ipaddress
import socket
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import dpkt

from gateway.config import DeviceConfig, GatewayConfig, UdpTransportConfig
from gateway.replay import Pacer, RecordingInfo, Replay
from hilgw.errors import ConfigError
from hilgw.v1 import recording_pb2, track_pb2

__all__ = ["CaptureResult", "Datagram", "is_capture", "read_datagrams", "replay_capture", "route_table"]

_PCAP_MAGICS = {b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d"}
_PCAPNG_MAGIC = b"\x0a\x0d\x0d\x0a"
#: Link types (tcpdump.org/linktypes.html): what dumpcap writes for Ethernet,
#: Linux "any" (SLL, SLL2), BSD loopback and raw IP.
_DLT_NULL, _DLT_EN10MB, _DLT_RAW, _DLT_LOOP, _DLT_SLL, _DLT_SLL2 = 0, 1, 101, 108, 113, 276


def is_capture(path: Path) -> bool:
    """True for a pcap or pcapng file (by its magic number)."""
    try:
        with path.open("rb") as f:
            head = f.read(4)
    except OSError:
        return False
    return head in _PCAP_MAGICS or head == _PCAPNG_MAGIC


@dataclass(frozen=True, slots=True)
class Datagram:
    """One captured packet: its capture time and, for UDP over IPv4, addresses and payload."""

    t_ns: int
    #: "udp", "not_udp", "fragment", or "damaged" (the file ends in a broken
    #: block, ``dst`` says why: a capture cut off by a power loss or kill -9).
    kind: str
    dst: str = ""
    dport: int = 0
    payload: bytes = b""


def _ip_of(linktype: int, buf: bytes) -> dpkt.ip.IP | None:
    if linktype == _DLT_EN10MB:
        eth = dpkt.ethernet.Ethernet(buf)
        return eth.data if isinstance(eth.data, dpkt.ip.IP) else None
    if linktype == _DLT_SLL:
        sll = dpkt.sll.SLL(buf)
        return sll.data if isinstance(sll.data, dpkt.ip.IP) else None
    if linktype == _DLT_SLL2:
        sll2 = dpkt.sll2.SLL2(buf)
        return sll2.data if isinstance(sll2.data, dpkt.ip.IP) else None
    if linktype in (_DLT_NULL, _DLT_LOOP):
        lo = dpkt.loopback.Loopback(buf)
        return lo.data if isinstance(lo.data, dpkt.ip.IP) else None
    if linktype in (_DLT_RAW, 12, 14):
        return dpkt.ip.IP(buf) if buf[:1] and buf[0] >> 4 == 4 else None
    raise ConfigError(
        "capture", f"link type {linktype} is not read (Ethernet, Linux SLL/SLL2, loopback, raw IP)"
    )


def read_datagrams(path: Path) -> Iterator[Datagram]:
    """Every packet of a pcap/pcapng file in file order (ConfigError when it
    cannot be read at all; a damaged tail ends it with one ``"damaged"`` item)."""
    n = 0
    with path.open("rb") as f:
        try:
            head = f.read(4)
            f.seek(0)
            reader = dpkt.pcapng.Reader(f) if head == _PCAPNG_MAGIC else dpkt.pcap.Reader(f)
            linktype = reader.datalink()
            # dpkt gives float seconds: ~0.24 us resolution at today's epoch,
            # far below ASTERIX's 1/128 s time of day. The link type is the
            # first interface's (dumpcap -i IFACE writes one).
            for ts, buf in reader:
                n += 1
                t_ns = round(float(ts) * 1e9)
                try:
                    ip = _ip_of(linktype, bytes(buf))
                except (dpkt.UnpackError, IndexError):
                    ip = None
                if ip is None or not isinstance(ip, dpkt.ip.IP):
                    yield Datagram(t_ns, "not_udp")
                elif ip.mf or ip.offset:
                    yield Datagram(t_ns, "fragment")
                elif not isinstance(ip.data, dpkt.udp.UDP):
                    yield Datagram(t_ns, "not_udp")
                else:
                    udp = ip.data
                    yield Datagram(t_ns, "udp", socket.inet_ntoa(ip.dst), int(udp.dport), bytes(udp.data))
        except (ValueError, dpkt.NeedData, dpkt.UnpackError) as exc:
            if n == 0:
                raise ConfigError(str(path), f"cannot read as pcap/pcapng: {exc}") from None
            yield Datagram(0, "damaged", f"{path}: unreadable after packet {n} (byte {f.tell()}): {exc}")


def route_table(devices: Sequence[DeviceConfig]) -> dict[tuple[str, int], str]:
    """(destination address, port) -> device id for every UDP device; address
    "" stands for any (a wildcard or loopback bind: captures of a lab LAN
    carry the sender's view of the address)."""
    out: dict[tuple[str, int], str] = {}
    for d in devices:
        t = d.transport
        if not d.enabled or not isinstance(t, UdpTransportConfig):
            continue
        if t.group is not None:
            key = (t.group, t.bind_port)
        else:
            host = t.bind_host
            wild = host in ("", "0.0.0.0") or ipaddress.ip_address(host).is_loopback
            key = ("" if wild else host, t.bind_port)
        if key in out:
            raise ConfigError(f"devices[{d.id}]", f"listens where {out[key]} does ({key[0] or '*'}:{key[1]})")
        out[key] = d.id
    return out


@dataclass
class CaptureResult:
    """What a capture replay did with every packet, and the pictures it made."""

    packets: int = 0
    #: By device id.
    decoded: Counter[str] = field(default_factory=Counter)
    #: (device id, reason) -> datagrams whose every input was rejected.
    rejected: Counter[tuple[str, str]] = field(default_factory=Counter)
    #: "addr:port" -> UDP datagrams no device listens for.
    unmapped: Counter[str] = field(default_factory=Counter)
    not_udp: int = 0
    fragment: int = 0
    #: Why a file's tail could not be read (one line per damaged file).
    damaged: list[str] = field(default_factory=list)
    steps: list[track_pb2.TrackBatch] = field(default_factory=list)
    replay: Replay | None = None

    @property
    def accounted(self) -> int:
        """Packets in some category: equals :attr:`packets` (every one accounted for)."""
        return (
            sum(self.decoded.values())
            + sum(self.rejected.values())
            + sum(self.unmapped.values())
            + self.not_udp
            + self.fragment
        )


def replay_capture(
    paths: Sequence[Path],
    config: GatewayConfig,
    speed: float | None = None,
    on_step: Callable[[track_pb2.TrackBatch], None] | None = None,
) -> CaptureResult:
    """Replay capture files (in time order, one after another) through ``config``'s
    devices and fusion engine; see the module docstring."""
    routes = route_table(config.devices)
    info = RecordingInfo(
        paths=list(paths),
        gateway_id=config.gateway_id,
        devices=[d for d in config.devices if d.enabled],
        fusion=config.fusion,
        start_ns=0,
        end_ns=0,
        raw_frames=0,
        track_batches=0,
        dropped={},
    )
    rp = Replay(info)
    res = CaptureResult(replay=rp)
    period_ns = round(1e9 / config.fusion.publish_hz)
    pace = Pacer(speed)
    next_step: int | None = None
    for path in paths:
        for dg in read_datagrams(path):
            if dg.kind == "damaged":
                res.damaged.append(dg.dst)
                continue
            res.packets += 1
            pace(dg.t_ns)
            if next_step is None:
                next_step = dg.t_ns + period_ns
            while dg.t_ns > next_step:  # steps due before this packet (ties go into the step)
                _step(rp, next_step, res, on_step)
                next_step += period_ns
            if dg.kind == "not_udp":
                res.not_udp += 1
                continue
            if dg.kind == "fragment":
                res.fragment += 1
                continue
            dev = routes.get((dg.dst, dg.dport)) or routes.get(("", dg.dport))
            if dev is None:
                res.unmapped[f"{dg.dst}:{dg.dport}"] += 1
                continue
            _feed(rp, dev, dg, res)
    if next_step is not None:
        _step(rp, next_step, res, on_step)  # the last datagrams' step
    return res


def capture_command(paths: Sequence[Path], config_path: Path, speed: float | None) -> int:
    """``hilgw replay --config CFG CAPTURE...``: replay and print where every packet went."""
    from rich.console import Console

    from gateway.config import load_config

    console = Console(stderr=True)
    config = load_config(config_path)
    res = replay_capture(paths, config, speed=speed)
    rejected = ", ".join(f"{d} {r}: {n}" for (d, r), n in sorted(res.rejected.items())) or "none"
    unmapped = ", ".join(f"{a}: {n}" for a, n in sorted(res.unmapped.items())) or "none"
    decoded = ", ".join(f"{d}: {n}" for d, n in sorted(res.decoded.items())) or "none"
    tracks = len(res.steps[-1].tracks) if res.steps else 0
    console.print(
        f"{len(paths)} capture file(s), {res.packets} packets: decoded {decoded}; rejected {rejected}; "
        f"unmapped {unmapped}; not UDP {res.not_udp}; fragments {res.fragment}; "
        f"{len(res.steps)} steps, {tracks} tracks at the end",
        soft_wrap=True,
    )
    for why in res.damaged:
        console.print(f"[yellow]damaged capture: {why}", soft_wrap=True)
    assert res.replay is not None
    for dev, st in sorted(res.replay.stats.items()):
        drops = ", ".join(f"{r} {n}" for r, n in sorted(st.drops.items())) or "no drops"
        srcs = ", ".join(f"{n} {s.records_in} records" for n, s in sorted(st.sources.items()))
        unknown = ", ".join(f"{i} ({n})" for i, n in sorted(st.unknown_sources.items()))
        line = f"  {dev}: {st.frames_in} frames, {st.reports_out} reports, {drops}"
        line += f"; sources {srcs}" if srcs else ""
        line += f"; unknown sources {unknown}" if unknown else ""
        console.print(line, soft_wrap=True)
    return 0 if res.accounted == res.packets else 1


def _step(
    rp: Replay, t_ns: int, res: CaptureResult, on_step: Callable[[track_pb2.TrackBatch], None] | None
) -> None:
    out = rp.step(t_ns)
    res.steps.append(out)
    if on_step is not None:
        on_step(out)


def _feed(rp: Replay, dev: str, dg: Datagram, res: CaptureResult) -> None:
    st = rp.stats.get(dev)
    if st is None:  # a skipped protocol (launcher): its traffic is no input of fusion
        res.unmapped[f"{dg.dst}:{dg.dport}"] += 1
        return
    f0, r0, drops0 = st.frames_in, st.rejected_in, Counter(st.drops)
    rp.feed(recording_pb2.RawFrame(device_id=dev, receive_time_ns=dg.t_ns, data=dg.payload))
    df, dr = st.frames_in - f0, st.rejected_in - r0
    if dr > 0 and df <= dr:
        reason = (st.drops - drops0).most_common(1)[0][0]
        res.rejected[(dev, reason)] += 1
    else:
        res.decoded[dev] += 1
