"""The frigate emulator's ASTERIX is standard-conforming, as Wireshark reads it.

The demo scenario's two frigates, as the emulator encodes them, for 60 scenario
seconds from t = 40 s, while both ballistic targets are in flight and above
I062/130's 150,000 ft. Every captured datagram goes through tshark's
ASTERIX dissector (``-T json``) and fails the test on: a malformed packet or
an expert error, data blocks that do not fill the datagram, a record without
one of its category's mandatory items, or a value outside the standard's range
(the ranges of EUROCONTROL CAT062 ed. 1.21 and CAT048 ed. 1.32 as the
asterix-specs project writes them, e.g. ``130 ... >= -1500 <= 150000``). The
gateway's decoder reads the same datagrams without a reject and carries the
ballistic altitude (I062/340 HEIGHT).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from drivers.asterix import AsterixCodec, ServiceMessage065, SystemTrack062, SystemTrackBatch, TargetReport048
from drivers.base import Rejected, Role
from sim_devices.frigate_emulator import Counters, encode_scan
from sim_devices.frigate_model import FrigateModel
from sim_devices.scenario import resolve_scenario
from tests.unit.test_tshark_crosscheck import write_pcap

TSHARK = shutil.which("tshark")
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(TSHARK is None, reason="tshark not installed (apt-get install -y tshark)"),
]

#: Mandatory items per category (CAT048 ed. 1.32, CAT062 ed. 1.21, CAT034 ed. 1.29,
#: CAT065 ed. 1.6 UAP presence); a tuple is "at least one of".
MANDATORY: dict[int, list[str | tuple[str, ...]]] = {
    48: ["010", "140", "020", "040"],
    62: ["010", "040", "070", "080", ("105", "100")],
    34: ["000", "010", "030"],
    65: ["000", "010", "015", "030"],
}
#: tshark field -> (low, high, high inclusive) in the item's own unit (ft, FL, NM, °, s, m/s).
RANGES: dict[str, tuple[float, float, bool]] = {
    "asterix.062_130_VALUE": (-1500.0, 150_000.0, True),
    "asterix.062_136_VALUE": (-15.0, 1500.0, True),
    "asterix.062_135_VALUE": (-15.0, 1500.0, True),
    "asterix.062_105_LAT": (-90.0, 90.0, True),
    "asterix.062_105_LON": (-180.0, 180.0, False),
    "asterix.062_185_VX": (-8192.0, 8191.75, True),
    "asterix.062_185_VY": (-8192.0, 8191.75, True),
    "asterix.062_070_VALUE": (0.0, 86400.0, False),
    "asterix.048_140_VALUE": (0.0, 86400.0, False),
    "asterix.034_030_VALUE": (0.0, 86400.0, False),
    "asterix.065_030_VALUE": (0.0, 86400.0, False),
    "asterix.048_040_RHO": (0.0, 256.0, False),
    "asterix.048_040_THETA": (0.0, 360.0, False),
    "asterix.048_200_HDG": (0.0, 360.0, False),
}
T_START_S = 40.0
SCENARIO_S = 60.0
FT = 0.3048


@dataclass
class Findings:
    """What tshark's dissection of a capture shows."""

    datagrams: int = 0
    records: Counter[int] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)
    ballistic: int = 0  # CAT062 records whose I062/340 HEIGHT is above 150,000 ft
    mon: Counter[str] = field(default_factory=Counter)  # CAT062 records by I062/080 MON as tshark reads it


def _as_list(v: Any) -> list[Any]:
    return v if isinstance(v, list) else [v]


def _leaves(node: Any, out: dict[str, list[str]]) -> None:
    for k, v in node.items():
        for x in _as_list(v):
            if isinstance(x, dict):
                _leaves(x, out)
            else:
                out.setdefault(k, []).append(x)


def dissect(datagrams: list[bytes], tmp_path: Path) -> Findings:
    """Run tshark's ASTERIX dissector over ``datagrams`` and collect every violation."""
    assert TSHARK is not None
    pcap = tmp_path / "asterix.pcap"
    write_pcap(pcap, [(8600, dg) for dg in datagrams])
    res = subprocess.run(
        [TSHARK, "-r", str(pcap), "-d", "udp.port==8600,asterix", "-T", "json", "--no-duplicate-keys"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    packets = json.loads(res.stdout)
    f = Findings(datagrams=len(packets))
    assert len(packets) == len(datagrams)
    for n, (pkt, dg) in enumerate(zip(packets, datagrams, strict=True), 1):
        layers = pkt["_source"]["layers"]
        if "_ws.malformed" in layers or "_ws.expert" in layers:
            f.problems.append(
                f"datagram {n}: malformed/expert: {layers.get('_ws.malformed') or layers['_ws.expert']}"
            )
        blocks = _as_list(layers.get("asterix", []))
        if sum(int(b["asterix.length"]) for b in blocks) != len(dg):
            f.problems.append(f"datagram {n}: data blocks do not fill its {len(dg)} bytes")
        for b in blocks:
            cat = int(b["asterix.category"])
            for i, rec in enumerate(_as_list(b.get("asterix.message", []))):
                f.records[cat] += 1
                where = f"datagram {n} CAT{cat:03d} record {i}"
                for m in MANDATORY.get(cat, []):
                    alts = m if isinstance(m, tuple) else (m,)
                    if not any(f"asterix.{cat:03d}_{a}" in rec for a in alts):
                        f.problems.append(f"{where}: mandatory I{cat:03d}/{'|'.join(alts)} missing")
                values: dict[str, list[str]] = {}
                _leaves(rec, values)
                for name, (lo, hi, incl) in RANGES.items():
                    for v in values.get(name, []):
                        x = float(v)
                        if not (lo <= x <= hi if incl else lo <= x < hi):
                            f.problems.append(
                                f"{where}: {name} = {x} outside [{lo}, {hi}{']' if incl else ')'}"
                            )
                if cat == 62:
                    f.mon[";".join(values.get("asterix.062_080_MON", ["absent"]))] += 1
                height = values.get("asterix.062_340_HEIGHT_VALUE")
                if height and float(height[0]) > 150_000.0:
                    f.ballistic += 1
                    if values.get("asterix.062_080_SRC", ["0"])[0] != "0":
                        f.problems.append(f"{where}: I062/130 absent but I062/080 SRC names a source")
    return f


def demo_frigate_traffic() -> tuple[list[bytes], int]:
    """60 scenario seconds of both demo frigates' ASTERIX from T_START_S, and the skipped count.

    Built with the emulator loop's own calls (``FrigateModel.scan``,
    ``encode_scan``, the CAT065 status of ``_serve``) rather than captured
    from the process: the bytes are the same, and the run takes a second, not
    a minute, with no wall-clock race on a loaded machine.
    """
    scenario = resolve_scenario("builtin:demo")
    epoch = time.time_ns() - round(T_START_S * 1e9)
    out: list[bytes] = []
    skipped = 0
    for sensor in ("ew-ship-a", "ew-ship-b"):
        model = FrigateModel(scenario, sensor, epoch)
        codec = AsterixCodec(Role.DEVICE, source=sensor)
        counters = Counters()
        c = model.sensor
        for k in range(round(T_START_S * c.update_hz), round((T_START_S + SCENARIO_S) * c.update_hz)):
            t = k / c.update_hz
            out.append(codec.send(ServiceMessage065(c.sac, c.sic + 1, 1, 1, epoch + round(t * 1e9), nogo=0)))
            out += encode_scan(codec, model.scan(t)[0], counters)
        skipped += counters.encode_skipped
    return out, skipped


def test_demo_frigate_asterix_conforms_in_wireshark(tmp_path: Path) -> None:
    datagrams, skipped = demo_frigate_traffic()
    assert skipped == 0  # nothing the standard cannot carry made the encoder refuse a record
    f = dissect(datagrams, tmp_path)
    assert f.problems == [], f"{len(f.problems)} problems over {f.datagrams} datagrams: {f.problems[:10]}"
    # The capture spans both frigates' 60 s (one north marker per scan) and ballistic targets.
    assert f.records[34] >= 2 * (SCENARIO_S - 2)
    assert f.records[48] > 100
    assert f.records[62] > 100
    assert f.ballistic >= 20
    # Each frigate's tracks come from its one radar: I062/080 MON = 1 (monosensor) in every record.
    assert f.mon == {"1": f.records[62]}
    # The gateway's decoder reads it all, ballistic altitude included.
    codec = AsterixCodec(Role.GATEWAY)
    heights = []
    for dg in datagrams:
        evs = codec.receive_datagram_batch(dg, time.time_ns())
        assert not [e for e in evs if isinstance(e, Rejected)]
        for e in evs:
            if isinstance(e, SystemTrackBatch):
                rows = e.rows
                assert np.all(np.isfinite(rows["geo_alt_m"]) != np.isfinite(rows["measured_height_m"]))
                heights += rows["measured_height_m"][np.isfinite(rows["measured_height_m"])].tolist()
    assert len(heights) == f.ballistic
    assert min(heights) > 150_000 * FT


def test_the_checker_sees_what_it_looks_for(tmp_path: Path) -> None:
    """Each kind of violation the conformance test looks for is found in a bad capture."""
    dev = AsterixCodec(Role.DEVICE)
    t = time.time_ns()
    good = dev.send(TargetReport048(1, 2, t, 10_000.0, 1.0, track_number=3))
    no_020 = bytearray(good)
    # FSPEC octet 1 is FRNs 1-7 (010 140 020 040 ...): clear I048/020 and drop its octet.
    no_020[3] &= ~0x20 & 0xFF
    no_020 = no_020[:9] + no_020[10:]
    no_020[1:3] = len(no_020).to_bytes(2, "big")
    over = dev.send(SystemTrack062(1, 3, 4, t, 0.5, 0.1, geo_alt_m=1000.0))
    i = over.index(round(1000.0 / FT / 6.25).to_bytes(2, "big"))  # I062/130's raw value
    over = over[:i] + (32000).to_bytes(2, "big") + over[i + 2 :]  # 200,000 ft
    mono = dev.send(SystemTrack062(1, 3, 5, t, 0.5, 0.1, monosensor=True))
    f = dissect([good, bytes(no_020), over, good[:-3], mono], tmp_path)
    assert f.mon == {"0": 1, "1": 1}  # I062/080 MON: the multisensor default, then a monosensor track
    text = "\n".join(f.problems)
    assert "datagram 1" not in text
    assert "datagram 2 CAT048 record 0: mandatory I048/020 missing" in text
    assert "datagram 3 CAT062 record 0: asterix.062_130_VALUE = 200000.0 outside" in text
    assert "datagram 4: malformed" in text or "datagram 4: data blocks do not fill" in text
