"""Cost of authenticating a launcher's acks and heartbeats (docs/icd/launcher.md §7.5).

    .venv/bin/python benchmarks/bench_launcher_mac.py [--frames 20000] [--repeat 5] [--json]

Rows (µs per frame, lower is better; best of ``--repeat`` runs over ``--frames``
pre-built frames, so building them is not timed):

* ``HMAC-SHA256/128 alone``    : ``hmac.new(key, domain + 32 bytes).digest()[:16]``,
  the primitive;
* ``v1 heartbeat, no MAC``     : the gateway codec taking an untagged v1 heartbeat
  (``accept_v1``): what decoding costs without authentication;
* ``v2 heartbeat, verified``   : the gateway codec's whole check of a valid
  heartbeat (key, tag in constant time, decode, counter, time);
* ``v2 ack, verified``         : the same for an ack (plus matching it to a sent cue);
* ``v2 forged, refused``       : a heartbeat whose tag does not verify;
* ``v2 heartbeat, signed``     : the launcher codec sealing and encoding one;
* ``cue sealed (gateway)``      : the cue path's one MAC per cue
  (docs/cue-path.md §3): ``KeySealer.seal_cue`` of an ``EngagementCue``, i.e.
  the ICD body encoded and its 256-bit tag computed, in the core's decision;
* ``proto cue MAC (removed)``   : the message-level HMAC over the cue's
  canonical proto bytes that each cue paid on top until one MAC per cue.

``verification overhead`` is v2 verified minus v1 per heartbeat; ``core share
at 1,000 answers/s`` is the fraction of one core the gateway spends verifying
1,000 acks and heartbeats a second (500 launchers at 2 Hz). The machine is
shared: figures are noisy; compare rows within one run.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import time
from collections.abc import Callable

from drivers.base import Role
from drivers.launcher import Ack, AckResult, LauncherCanCodec, LauncherState, LauncherStatus, NackReason
from drivers.launcher import messages as m
from gateway.cue.seal import KeySealer
from gateway.cue.signing import compute_mac
from hilgw.can import CanFrame
from hilgw.v1 import cue_pb2

LID = 3
KEYS = {7: bytes(range(32))}
T0 = 1_800_000_000_000_000_000


def status(i: int) -> LauncherStatus:
    return LauncherStatus(launcher_id=LID, state=LauncherState.READY, sequence=0, launcher_time_ns=T0 + i)


def ack(i: int) -> Ack:
    return Ack(
        launcher_id=LID,
        result=AckResult.ACK,
        reason=NackReason.NONE,
        cue_sequence=i + 1,
        cue_id=i + 1,
        ack_sequence=0,
        launcher_time_ns=T0 + i,
    )


def best_us(run: Callable[[], None], n: int, repeat: int) -> float:
    """Best wall time of ``run`` (which handles ``n`` frames) over ``repeat`` runs, in µs per frame."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - t0)
    return best / n * 1e6


def measure(n: int, repeat: int) -> dict[str, float]:
    out: dict[str, float] = {}
    key = KEYS[7]
    signed = [bytes(range(32))] * n
    out["HMAC-SHA256/128 alone"] = best_us(
        lambda: [hmac.new(key, m.DOMAIN_STATUS + s, hashlib.sha256).digest()[:16] for s in signed], n, repeat
    )

    v1_dev = LauncherCanCodec(Role.DEVICE, launcher_id=LID, icd_version=1)
    v1_frames = [v1_dev.send(status(i))[0] for i in range(n)]

    def v1_run() -> None:
        gw = LauncherCanCodec(Role.GATEWAY, launcher_id=LID, keys=KEYS, accept_v1=True)
        for f in v1_frames:
            gw.receive_frames([f], T0)

    out["v1 heartbeat, no MAC"] = best_us(v1_run, n, repeat)

    dev = LauncherCanCodec(Role.DEVICE, launcher_id=LID, keys=KEYS)
    hb_frames = [dev.send(status(i))[0] for i in range(n)]
    ack_frames = [dev.send(ack(i))[0] for i in range(n)]
    forged = [CanFrame(f.arbitration_id, f.data[:40] + bytes(8), True) for f in hb_frames]

    def v2_run(frames: list[CanFrame], expect: bool = False) -> Callable[[], None]:
        def run() -> None:
            gw = LauncherCanCodec(Role.GATEWAY, launcher_id=LID, keys=KEYS)
            if expect:
                assert gw.verifier is not None
                for i in range(n):
                    gw.verifier.expect(i + 1, i + 1)
            for f in frames:
                gw.receive_frames([f], T0)

        return run

    # Every frame must be accepted (or, forged, refused): check once, untimed.
    gw = LauncherCanCodec(Role.GATEWAY, launcher_id=LID, keys=KEYS)
    assert all(isinstance(gw.receive_frames([f], T0)[0], LauncherStatus) for f in hb_frames)
    out["v2 heartbeat, verified"] = best_us(v2_run(hb_frames), n, repeat)
    out["v2 ack, verified"] = best_us(v2_run(ack_frames, expect=True), n, repeat)
    out["v2 forged, refused"] = best_us(v2_run(forged), n, repeat)

    def sign_run() -> None:
        d = LauncherCanCodec(Role.DEVICE, launcher_id=LID, keys=KEYS)
        for i in range(n):
            d.send(status(i))

    out["v2 heartbeat, signed"] = best_us(sign_run, n, repeat)

    # Cues are rare (a few a second) and sealing one costs ~100x a heartbeat check:
    # at most 2,000 of them keep the run short on a shared machine.
    nc = min(n, 2000)
    cues = [_cue(i) for i in range(nc)]
    sealer = KeySealer(LID, KEYS)
    out["cue sealed (gateway)"] = best_us(lambda: [sealer.seal_cue(c) for c in cues], nc, repeat)
    out["proto cue MAC (removed)"] = best_us(lambda: [compute_mac(c, KEYS[7]) for c in cues], nc, repeat)
    return out


def _cue(i: int) -> cue_pb2.EngagementCue:
    msg = cue_pb2.EngagementCue(
        cue_id=i + 1,
        launcher_id="L1",
        system_track_id=7,
        time_of_validity_ns=T0,
        valid_from_ns=T0,
        valid_until_ns=T0 + 5_000_000_000,
        sequence=i + 1,
        gateway_id="gw",
    )
    s = msg.state
    s.x, s.y, s.z, s.vx, s.vy, s.vz = 4.0e6, 3.0e5, 4.9e6, 100.0, 50.0, -20.0
    s.covariance.extend([25.0 if k % 7 == 0 else 0.0 for k in range(36)])
    return msg


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--frames", type=int, default=20_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    a = ap.parse_args()
    rows = measure(a.frames, a.repeat)
    overhead = rows["v2 heartbeat, verified"] - rows["v1 heartbeat, no MAC"]
    share = rows["v2 heartbeat, verified"] * 1000 / 1e6
    if a.json:
        print(
            json.dumps(
                {
                    "frames": a.frames,
                    "repeat": a.repeat,
                    "us_per_frame": {k: round(v, 3) for k, v in rows.items()},
                    "verification_overhead_us": round(overhead, 3),
                    "core_share_at_1000_per_s": round(share, 5),
                }
            )
        )
        return
    print(f"launcher answer authentication, {a.frames} frames, best of {a.repeat}")
    print(f"{'row':<30} {'us/frame':>10} {'frames/s':>12}")
    for name, us in rows.items():
        print(f"{name:<30} {us:>10.2f} {1e6 / us:>12,.0f}")
    print(f"{'verification overhead':<28} {overhead:>10.2f}   (v2 verified - v1, per heartbeat)")
    print(f"{'core share at 1,000/s':<28} {share * 100:>9.2f} %")


if __name__ == "__main__":
    main()
