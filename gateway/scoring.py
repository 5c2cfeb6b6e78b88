"""Live truth scoring of the system track picture: OSPA, GOSPA, continuity, timeliness.

Pure numpy/scipy, no I/O: :class:`LiveScorer` is fed truth batches, sensor
report positions and track batches, and renders a ``hilgw.v1.ScoreReport``;
``hilgw score`` and the gateway's optional scoring task (gateway/score.py)
are the I/O around it.

Metrics, on 3-D positions (m), with cutoff ``c`` and order ``p``:

* OSPA (Schuhmacher, Vo & Vo, "A consistent metric for performance evaluation
  of multi-object filters", IEEE TSP 56(8), 2008, eq. 3): for |X| = m <= |Y| = n,

      d_p^(c)(X, Y) = ( (1/n) ( min_π Σ_{i<=m} d^(c)(x_i, y_π(i))^p + c^p (n - m) ) )^(1/p)

  with d^(c) = min(c, ‖x - y‖); 0 if both sets are empty, c if only one is.
* GOSPA with α = 2 (Rahmathullah, García-Fernández & Svensson, "Generalized
  optimal sub-pattern assignment metric", FUSION 2017, Prop. 1):

      d_p^(c,2)(X, Y) = ( min_γ Σ_{(i,j)∈γ} ‖x_i - y_j‖^p + c^p/2 (|X| + |Y| - 2|γ|) )^(1/p)

  over assignments γ of pairs closer than c. It splits into a localisation
  term (assigned pairs), c^p/2 per missed truth and c^p/2 per false track.
  Both minimisations are one ``scipy.optimize.linear_sum_assignment`` on the
  cost min(d, c)^p: a pair at d >= c costs c^p, exactly what leaving both
  unassigned costs (c^p/2 + c^p/2), so dropping such pairs is still optimal.
* Continuity per truth target, from the GOSPA assignment at each step (the
  CLEAR-MOT conventions, Bernardin & Stiefelhagen, EURASIP JIVP 2008, §2.1):
  an *id swap* when the assigned track id differs from the last one assigned
  (even across a gap); a *track break* when a target assigned at the previous
  step is present but unassigned now.
* Timeliness per target: first time in truth, first sensor report within c of
  it ("explained by it"), first step it is assigned to a CONFIRMED track, and
  the first engagement cue sent on a track assigned to it (:meth:`LiveScorer.on_cue`).
  Reports are matched against truth up to ``max_truth_age_s`` before the first
  truth batch (truth that starts after the sensors); confirmation and cue are
  taken only at or after it, so a detection seen is never later than the
  confirmation it led to. A target already confirmed when its truth begins
  therefore shows at most ``max_truth_age_s`` plus the wait for the next
  picture: the span the scorer saw, not the tracker's own latency.

Time alignment: tracks are extrapolated from their own time of validity, and
truth from its batch time, to the track batch's time at constant velocity
(truth batches come at 2 Hz: a ballistic target's 0.5 g t² is ~1 m at 0.5 s).
"""

from __future__ import annotations

import math
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from scipy.optimize import linear_sum_assignment
from scipy.spatial.distance import cdist

from hilgw.v1 import track_pb2, truth_pb2

__all__ = [
    "Continuity",
    "Gospa",
    "LiveScorer",
    "StepScore",
    "gospa",
    "ospa",
    "tracks_from_proto",
    "truth_from_proto",
]

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
B = npt.NDArray[np.bool_]


#: Largest |position| (m) or |velocity| (m/s) a truth state may have: 1e9 is
#: far beyond any orbit, and keeps extrapolated positions finite.
MAX_STATE = 1e9


def _costs(x: F64, y: F64, c: float, p: float) -> tuple[F64, F64]:
    d = cdist(np.asarray(x, np.float64).reshape(-1, 3), np.asarray(y, np.float64).reshape(-1, 3))
    return d, np.minimum(d, c) ** p


def ospa(x: F64, y: F64, c: float, p: float = 2.0) -> float:
    """OSPA distance between position sets ``x`` (m, 3) and ``y`` (n, 3) (module docstring)."""
    if c <= 0 or p < 1:
        raise ValueError(f"need c > 0 and p >= 1, got c={c}, p={p}")
    m, n = len(x), len(y)
    if m == 0 and n == 0:
        return 0.0
    if m == 0 or n == 0:
        return float(c)
    _, cost = _costs(x, y, c, p)
    rows, cols = linear_sum_assignment(cost)
    big = max(m, n)
    total = float(cost[rows, cols].sum()) + c**p * (big - min(m, n))
    return float((total / big) ** (1.0 / p))


@dataclass(frozen=True, slots=True)
class Gospa:
    """A GOSPA (α = 2) result: ``distance**p == localisation + (missed + false_tracks) * c**p / 2``.

    ``localisation`` is Σ d^p over the assigned pairs (the p-th power term);
    ``pairs`` are (index in x, index in y) with distance < c.
    """

    distance: float
    localisation: float
    missed: int
    false_tracks: int
    pairs: tuple[tuple[int, int], ...]


def gospa(x: F64, y: F64, c: float, p: float = 2.0) -> Gospa:
    """GOSPA (α = 2) between truth positions ``x`` (m, 3) and estimates ``y`` (n, 3)."""
    if c <= 0 or p < 1:
        raise ValueError(f"need c > 0 and p >= 1, got c={c}, p={p}")
    m, n = len(x), len(y)
    pairs: list[tuple[int, int]] = []
    loc = 0.0
    if m and n:
        d, cost = _costs(x, y, c, p)
        rows, cols = linear_sum_assignment(cost)
        for i, j in zip(rows.tolist(), cols.tolist(), strict=True):
            if d[i, j] < c:
                pairs.append((i, j))
                loc += float(d[i, j]) ** p
    missed, false = m - len(pairs), n - len(pairs)
    total = loc + (missed + false) * c**p / 2.0
    return Gospa(float(total ** (1.0 / p)), loc, missed, false, tuple(pairs))


@dataclass(slots=True)
class _TargetState:
    first_truth_ns: int = 0
    first_detection_ns: int = 0
    first_confirmed_ns: int = 0
    first_cue_ns: int = 0
    last_track: int | None = None  # last track id ever assigned
    assigned_prev: bool = False
    swaps: int = 0
    breaks: int = 0
    steps_tracked: int = 0
    steps_present: int = 0
    duplicate_steps: int = 0
    current: int | None = None
    track_ids: set[int] = field(default_factory=set)  # every track id ever assigned


class Continuity:
    """Id swaps and track breaks per truth target from the assignment at each step."""

    def __init__(self) -> None:
        self.targets: dict[str, _TargetState] = {}

    def get(self, target_id: str) -> _TargetState:
        st = self.targets.get(target_id)
        if st is None:
            st = self.targets[target_id] = _TargetState()
        return st

    def update(self, present: Sequence[str], assigned: dict[str, int]) -> None:
        """One step: ``present`` truth ids, and the track id assigned to some of them."""
        for tid in present:
            st = self.get(tid)
            st.steps_present += 1
            trk = assigned.get(tid)
            if trk is None:
                if st.assigned_prev:
                    st.breaks += 1
                st.assigned_prev = False
                st.current = None
                continue
            if st.last_track is not None and trk != st.last_track:
                st.swaps += 1
            st.last_track = trk
            st.track_ids.add(trk)
            st.assigned_prev = True
            st.current = trk
            st.steps_tracked += 1
        for tid, st in self.targets.items():  # gone from truth: not a break
            if tid not in assigned and tid not in present:
                st.assigned_prev = False
                st.current = None


@dataclass(frozen=True, slots=True)
class StepScore:
    """The score of one step (one track batch against truth)."""

    t_ns: int
    ospa: float
    gospa: Gospa
    truth_count: int
    track_count: int
    #: Unassigned scored tracks within the cutoff of a target another track holds.
    duplicates: int = 0


@dataclass(slots=True)
class _Truth:
    ids: tuple[str, ...] = ()
    x: F64 = field(default_factory=lambda: np.zeros((0, 6)))
    t_ns: int = 0


def truth_from_proto(msg: truth_pb2.TruthBatch) -> tuple[tuple[str, ...], F64, int]:
    """(ids, ECEF states (N, 6), time ns) of a TruthBatch."""
    ids = tuple(t.target_id for t in msg.targets)
    x = np.array([[t.state.x, t.state.y, t.state.z, t.state.vx, t.state.vy, t.state.vz] for t in msg.targets])
    return ids, x.reshape(-1, 6), int(msg.time_ns)


def tracks_from_proto(msg: track_pb2.TrackBatch) -> tuple[I64, I64, F64, I64]:
    """(track ids, statuses, ECEF states (K, 6), times of validity ns) of a TrackBatch."""
    k = len(msg.tracks)
    ids = np.fromiter((t.track_id for t in msg.tracks), np.int64, k)
    st = np.fromiter((t.status for t in msg.tracks), np.int64, k)
    t_ns = np.fromiter((t.last_update_time_ns for t in msg.tracks), np.int64, k)
    x = np.array([[t.state.x, t.state.y, t.state.z, t.state.vx, t.state.vy, t.state.vz] for t in msg.tracks])
    return ids, st, x.reshape(-1, 6), t_ns


def _since(t0_ns: int, t1_ns: int) -> float:
    """Seconds from t0 to t1; NaN if either is unknown (0) or t1 comes first."""
    if not t0_ns or not t1_ns or t1_ns < t0_ns:
        return math.nan
    return (t1_ns - t0_ns) / 1e9


#: Track statuses scored as the estimated set (tentative tracks are not claims yet).
SCORED = (track_pb2.TRACK_STATUS_CONFIRMED, track_pb2.TRACK_STATUS_COASTING)


class LiveScorer:
    """Scores track batches against the latest truth as they come (see the module docstring).

    ``max_truth_age_s``: a track batch further than this from the latest truth
    is not scored (truth stopped or not yet received).
    """

    def __init__(self, cutoff_m: float = 2000.0, order_p: float = 2.0, max_truth_age_s: float = 2.0) -> None:
        if cutoff_m <= 0 or order_p < 1:
            raise ValueError(f"need cutoff_m > 0 and order_p >= 1, got {cutoff_m}, {order_p}")
        self.c = cutoff_m
        self.p = order_p
        self.max_truth_age_ns = round(max_truth_age_s * 1e9)
        self.truth = _Truth()
        self.continuity = Continuity()
        self.steps = 0
        self.sum_ospa = 0.0
        self.sum_gospa = 0.0
        self.last: StepScore | None = None
        self.max_duplicates = 0
        self.steps_with_duplicates = 0
        # Recent report positions and times, so truth that arrives a little
        # after the first reports (a scorer started with the bench) still sees them.
        self._recent: deque[tuple[F64, I64]] = deque()
        #: Truth batches rejected, by reason (non_finite, out_of_range, duplicate_id, no_time).
        self.truth_rejected: Counter[str] = Counter()
        #: Tracks left out of scoring for a non-finite state (a broken publisher).
        self.tracks_rejected = 0

    def on_truth(self, ids: Sequence[str], x: F64, t_ns: int) -> bool:
        """The truth at ``t_ns``: target ids and ECEF states (N, 6) of the targets that exist.

        A batch with a non-finite state, a repeated id or no time is rejected
        whole (False) and counted in :attr:`truth_rejected` by reason; the
        truth before it stays in force. One NaN would otherwise reach the
        assignment (scipy refuses a NaN cost) at every step after it.
        """
        xs = np.asarray(x, np.float64).reshape(-1, 6)
        reason = None
        if not np.isfinite(xs).all():
            reason = "non_finite"
        elif np.abs(xs).max(initial=0.0) > MAX_STATE:
            reason = "out_of_range"
        elif len(set(ids)) != len(ids):
            reason = "duplicate_id"
        elif int(t_ns) <= 0:
            reason = "no_time"
        if reason is not None:
            self.truth_rejected[reason] += 1
            return False
        self.truth = _Truth(tuple(ids), xs, int(t_ns))
        for tid in ids:
            st = self.continuity.get(tid)
            if not st.first_truth_ns:
                st.first_truth_ns = int(t_ns)
        for pos, t in self._recent:
            self._detect(pos, t)
        return True

    def truth_at(self, t_ns: int) -> tuple[tuple[str, ...], F64] | None:
        """Truth extrapolated to ``t_ns`` (ids, (N, 6)), or None if too old or none yet."""
        tr = self.truth
        if not tr.t_ns or abs(t_ns - tr.t_ns) > self.max_truth_age_ns:
            return None
        dt = (t_ns - tr.t_ns) * 1e-9
        x = tr.x.copy()
        x[:, :3] += x[:, 3:] * dt
        return tr.ids, x

    def on_reports(self, pos: F64, t_ns: I64) -> None:
        """Sensor report positions (M, 3) at their times (M,): marks first detections."""
        pos = np.asarray(pos, np.float64).reshape(-1, 3)
        t = np.asarray(t_ns, np.int64).reshape(-1)
        if not len(pos):
            return
        self._recent.append((pos, t))
        newest = int(t.max())
        while self._recent and newest - int(self._recent[0][1].max()) > self.max_truth_age_ns:
            self._recent.popleft()
        self._detect(pos, t)

    def _detect(self, pos: F64, t_ns: I64) -> None:
        if not self.truth.ids:
            return
        cont = self.continuity
        waiting = [i for i, tid in enumerate(self.truth.ids) if not cont.get(tid).first_detection_ns]
        if not waiting:
            return
        now = self.truth_at(int(np.median(t_ns)))
        if now is None:
            return
        ids, x = now
        d = cdist(x[waiting, :3], pos)
        for k, i in enumerate(waiting):
            hit = np.flatnonzero(d[k] < self.c)
            if hit.size:
                cont.get(ids[i]).first_detection_ns = int(np.min(t_ns[hit]))

    def on_tracks(self, track_ids: I64, status: I64, x: F64, t_valid_ns: I64, t_ns: int) -> StepScore | None:
        """Score one track picture valid at ``t_ns``; None when there is no fresh truth."""
        now = self.truth_at(t_ns)
        if now is None:
            return None
        ids, xt = now
        keep = np.isin(np.asarray(status), SCORED)
        trk_ids = np.asarray(track_ids)[keep]
        xe = np.asarray(x, np.float64).reshape(-1, 6)[keep]
        dt = (t_ns - np.asarray(t_valid_ns, np.int64)[keep]) * 1e-9
        with np.errstate(over="ignore", invalid="ignore"):
            ye = xe[:, :3] + xe[:, 3:] * dt[:, None]
        finite = np.isfinite(ye).all(axis=1)  # a NaN/inf track (a broken publisher) is left out, counted
        self.tracks_rejected += int((~finite).sum())
        keep[keep] = finite
        trk_ids, ye = trk_ids[finite], ye[finite]
        g = gospa(xt[:, :3], ye, self.c, self.p)
        o = ospa(xt[:, :3], ye, self.c, self.p)
        assigned = {ids[i]: int(trk_ids[j]) for i, j in g.pairs}
        self.continuity.update(ids, assigned)
        confirmed = np.asarray(status)[keep] == track_pb2.TRACK_STATUS_CONFIRMED
        for i, j in g.pairs:
            st = self.continuity.get(ids[i])
            # Not from a picture before the target's first truth (truth_at reaches back
            # max_truth_age_s): reports are matched back as far, so such a picture and the
            # first detection both land on the edge of that span, in either order (NaN).
            if confirmed[j] and not st.first_confirmed_ns and t_ns >= st.first_truth_ns:
                st.first_confirmed_ns = int(t_ns)
        dup = self._duplicates(ids, xt, ye, g.pairs)
        self.steps += 1
        self.sum_ospa += o
        self.sum_gospa += g.distance
        self.last = StepScore(int(t_ns), o, g, len(ids), len(ye), dup)
        return self.last

    def _duplicates(self, ids: Sequence[str], xt: F64, ye: F64, pairs: Sequence[tuple[int, int]]) -> int:
        """Count the duplicates of confirmed targets at one step.

        GOSPA pairs each target with one track, so a second track on a held
        target is just one more "false track", indistinguishable from a
        clutter track far from everything. A track assigned to no target
        that lies within the cutoff of a target held by another (confirmed
        or coasting) track is that target seen twice: counted per step and
        per target.
        """
        held = [i for i, _ in pairs]
        spare = np.setdiff1d(np.arange(len(ye)), [j for _, j in pairs])
        if not held or not spare.size:
            return 0
        d = cdist(ye[spare], xt[held, :3])
        near = d < self.c
        n = int(near.any(axis=1).sum())
        for k in np.flatnonzero(near.any(axis=0)):
            self.continuity.get(ids[held[k]]).duplicate_steps += 1
        if n:
            self.steps_with_duplicates += 1
            self.max_duplicates = max(self.max_duplicates, n)
        return n

    def on_cue(self, system_track_id: int, t_ns: int) -> str | None:
        """A cue sent on ``system_track_id`` at ``t_ns``: the first cue of the target that
        track is (or was last) assigned to. Returns that target's id, or None."""
        for tid, st in self.continuity.targets.items():
            if system_track_id in (st.current, st.last_track):
                if not st.first_cue_ns and t_ns >= st.first_truth_ns:  # as for confirmation
                    st.first_cue_ns = int(t_ns)
                return tid
        return None

    def on_track_batch(self, msg: track_pb2.TrackBatch) -> StepScore | None:
        """:meth:`on_tracks` of a TrackBatch."""
        ids, st, x, tv = tracks_from_proto(msg)
        return self.on_tracks(ids, st, x, tv, int(msg.time_ns))

    def on_truth_batch(self, msg: truth_pb2.TruthBatch) -> bool:
        """:meth:`on_truth` of a TruthBatch (False: rejected and counted)."""
        return self.on_truth(*truth_from_proto(msg))

    def report(self, gateway_id: str = "", final: bool = False) -> truth_pb2.ScoreReport:
        """The ScoreReport so far (last step, means, per-target continuity and timeliness)."""
        msg = truth_pb2.ScoreReport(
            gateway_id=gateway_id, final=final, cutoff_m=self.c, order_p=self.p, steps=self.steps
        )
        last = self.last
        if last is not None:
            g = last.gospa
            msg.time_ns = last.t_ns
            msg.ospa_m = last.ospa
            msg.gospa_m = g.distance
            msg.gospa_localisation_m = g.localisation ** (1.0 / self.p)
            msg.missed = g.missed
            msg.false_tracks = g.false_tracks
            msg.truth_count = last.truth_count
            msg.track_count = last.track_count
            msg.duplicate_tracks = last.duplicates
        msg.max_duplicate_tracks = self.max_duplicates
        msg.steps_with_duplicates = self.steps_with_duplicates
        if self.steps:
            msg.mean_ospa_m = self.sum_ospa / self.steps
            msg.mean_gospa_m = self.sum_gospa / self.steps
        for tid, st in sorted(self.continuity.targets.items()):
            # Confirmed (cued) before the first detection seen: the scorer joined late; unknown.
            dtc = _since(st.first_detection_ns, st.first_confirmed_ns)
            dtq = _since(st.first_detection_ns, st.first_cue_ns)
            msg.targets.add(
                target_id=tid,
                first_truth_time_ns=st.first_truth_ns,
                first_detection_time_ns=st.first_detection_ns,
                first_confirmed_time_ns=st.first_confirmed_ns,
                detection_to_confirmed_s=dtc,
                id_swaps=st.swaps,
                track_breaks=st.breaks,
                track_id=st.current or 0,
                steps_tracked=st.steps_tracked,
                steps_present=st.steps_present,
                first_cue_time_ns=st.first_cue_ns,
                detection_to_cue_s=dtq,
                track_ids=len(st.track_ids),
                duplicate_steps=st.duplicate_steps,
            )
            msg.id_swaps += st.swaps
            msg.track_breaks += st.breaks
        held = [len(st.track_ids) for st in self.continuity.targets.values() if st.track_ids]
        msg.track_ids_per_target = float(np.mean(held)) if held else 0.0
        return msg
