"""Replay a recorded demo run through this checkout's engine and score it against truth.

Run: ``.venv/bin/python -m benchmarks.fusion.demo_replay --epoch-ns E [--from S]
[--to S] [--scenario builtin:demo] [--json] PART.mcap...``

Two live demo runs never see the same input (clutter, detections and start-up
timing differ), so a change of a few tenths of a false track per picture is
lost in their spread. A recording is fixed input: ``hilgw replay`` runs its
raw frames through the codecs and the fusion engine of the checkout it is
started from (gateway/replay.py: a pure function of the recording), so two
versions of the engine can be scored on exactly the same frames.

The recording must come from a bench run with ``[recording]`` on and
``[emulation] epoch_ns`` set (the scenario clock, which the recording does
not hold). Each replayed picture is scored against the scenario truth at
its time (``sim_devices.truth``) with the scorer of ``hilgw score``
(:class:`gateway.scoring.LiveScorer`, c = 2000 m, p = 2) over scenario
times ``--from`` .. ``--to``. Besides the score it lists every confirmed or
coasting track that the assignment leaves out but that comes within 50 km
of a target (a duplicate, a track on a range arc, or clutter near a target)
and every change of a target's track id. Figures: benchmarks/fusion/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from gateway.replay import Replay, read_info, timeline
from gateway.scoring import SCORED, LiveScorer, tracks_from_proto
from hilgw.v1 import track_pb2
from sim_devices.scenario import resolve_scenario
from sim_devices.truth import truth_of

NEAR_M = 50_000.0


def score_recording(
    paths: list[Path], epoch_ns: int, t_from: float, t_to: float, scenario: str
) -> dict[str, Any]:
    """Replay ``paths`` and score the pictures between scenario times ``t_from`` and ``t_to``."""
    sc = resolve_scenario(scenario)
    truth = truth_of(sc)
    names = [t.id for t in sc.targets]
    scorer = LiveScorer(2000.0, 2.0)
    false_tracks: list[int] = []
    near: dict[tuple[str, int], list[tuple[float, float]]] = defaultdict(list)
    last_id: dict[str, int] = {}
    changes: list[dict[str, Any]] = []

    def on_step(out: track_pb2.TrackBatch, _recorded: track_pb2.TrackBatch) -> None:
        t = (out.time_ns - epoch_ns) * 1e-9
        if not t_from <= t <= t_to:
            return
        _, x, active = truth.at(t)
        ids = [n for n, a in zip(names, active, strict=True) if a]
        scorer.on_truth(ids, x[active], out.time_ns)
        step = scorer.on_track_batch(out)
        if step is None:
            return
        false_tracks.append(step.gospa.false_tracks)
        tid, status, xe, _ = tracks_from_proto(out)
        keep = np.isin(status, SCORED)
        kid, kx = tid[keep], xe[keep]
        assigned = set()
        for i, j in step.gospa.pairs:
            new = int(kid[j])
            assigned.add(new)
            if last_id.get(ids[i], new) != new:
                changes.append({"target": ids[i], "t_s": round(t, 1), "from": last_id[ids[i]], "to": new})
            last_id[ids[i]] = new
        xt = x[active]
        for k in range(kid.size):
            if int(kid[k]) in assigned or not xt.size:
                continue
            d = np.linalg.norm(xt[:, :3] - kx[k, :3], axis=1)
            i = int(d.argmin())
            if d[i] < NEAR_M:
                near[(ids[i], int(kid[k]))].append((t, float(d[i])))

    info = read_info(paths)
    Replay(info).run(timeline(info.paths), on_step=on_step)
    rep = scorer.report(final=True)
    return {
        "steps": rep.steps,
        "track_ids_per_target": rep.track_ids_per_target,
        "id_swaps": rep.id_swaps,
        "track_breaks": rep.track_breaks,
        "steps_with_duplicates": rep.steps_with_duplicates,
        "false_tracks_mean": float(np.mean(false_tracks)) if false_tracks else float("nan"),
        "false_tracks_max": max(false_tracks, default=0),
        "mean_ospa_m": rep.mean_ospa_m,
        "mean_gospa_m": rep.mean_gospa_m,
        "targets": {t.target_id: t.track_ids for t in rep.targets},
        "id_changes": changes,
        "unassigned_near_targets": [
            {
                "target": tgt,
                "track_id": k,
                "steps": len(v),
                "t_s": [round(v[0][0], 1), round(v[-1][0], 1)],
                "km": [round(v[0][1] / 1e3, 1), round(v[-1][1] / 1e3, 1)],
            }
            for (tgt, k), v in sorted(near.items(), key=lambda kv: kv[1][0][0])
        ],
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("parts", nargs="+", type=Path, help="the .mcap part(s) of one run")
    p.add_argument("--epoch-ns", type=int, required=True, help="[emulation] epoch_ns of the run")
    p.add_argument("--from", dest="t_from", type=float, default=60.0, help="first scenario time scored, s")
    p.add_argument("--to", dest="t_to", type=float, default=300.0, help="last scenario time scored, s")
    p.add_argument("--scenario", default="builtin:demo")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    a = p.parse_args(argv)
    res = score_recording(a.parts, a.epoch_ns, a.t_from, a.t_to, a.scenario)
    if a.json:
        print(json.dumps(res))
        return 0
    print(
        f"steps {res['steps']}  track ids/target {res['track_ids_per_target']:.3f}  "
        f"swaps {res['id_swaps']}  breaks {res['track_breaks']}  "
        f"steps with duplicates {res['steps_with_duplicates']}  "
        f"false tracks mean {res['false_tracks_mean']:.2f} max {res['false_tracks_max']}  "
        f"mean OSPA {res['mean_ospa_m']:.0f} m  mean GOSPA {res['mean_gospa_m']:.0f} m"
    )
    print("ids per target: " + ", ".join(f"{k} {v}" for k, v in res["targets"].items()))
    for c in res["id_changes"]:
        print(f"id change: {c['target']} at {c['t_s']} s, {c['from']} -> {c['to']}")
    for u in res["unassigned_near_targets"]:
        print(
            f"unassigned track {u['track_id']} near {u['target']}: {u['steps']} pictures, "
            f"t {u['t_s'][0]}..{u['t_s'][1]} s, {u['km'][0]} -> {u['km'][1]} km"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
