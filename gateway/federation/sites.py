"""Site pictures in, sensor tracks out: the theatre side of federation (docs/federation.md §3).

Each site gateway publishes its ``TrackBatch`` (``[mqtt] tracks_qos = 1``)
on the cluster. The theatre gateway subscribes to each site's tracks topic
and hands every accepted batch to its own fusion engine as ECEF sensor tracks
of the source ``site:<gateway id>``: track-to-track association and
covariance intersection (gateway/fusion/kalman.py), which stays consistent
when two sites share a sensor's history and their errors correlate in a way
nobody knows.

A batch is named by (gateway id, epoch, sequence) (TrackBatch lineage). The
same batch reaching the theatre twice (QoS 1 redelivery after a failover, or
two paths: the native NATS fast path and the MQTT session) is used once and
counted ``duplicate``. A sequence number skipped is *missing*, not yet lost:
a failover delivers in an order of its own (the persistent session redelivers
a picture that was in flight to the dead node after newer ones came by
another node or the fast path), so it waits ``gap_wait_s``. If it arrives
meanwhile it is counted ``late`` (not fused: a picture behind the one already
used adds nothing); if not, it is counted ``gap`` (lost before the theatre,
the figure the federation benchmark reports). An older picture that was never
missing is ``out_of_order``. Every message is counted on the source's
DeviceStats; a malformed one never raises.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Callable

import numpy as np
from google.protobuf.message import DecodeError

from gateway.bus import Topic
from gateway.devices.base import ReportsIn
from gateway.fusion.api import KIND_SENSOR_TRACK, ReportArrays
from gateway.health import DeviceStats
from gateway.sections.federation import FederationConfig, SiteConfig
from hilgw.v1 import health_pb2, track_pb2

__all__ = ["MAX_BYTES", "SiteInput", "batch_to_reports"]

MAX_BYTES = 64 * 1024 * 1024
_STATUS = {"tentative": 1, "confirmed": 2, "coasting": 3}
_U32 = 0xFFFFFFFF
#: Missing sequence numbers held at most; a larger jump is counted ``gap`` at once.
MAX_MISSING = 4096
#: Sequences remembered as used (duplicates of older ones count ``out_of_order``).
_RECENT = 4096


def batch_to_reports(
    batch: track_pb2.TrackBatch, statuses: frozenset[int], sensor_index: int
) -> tuple[ReportArrays, int]:
    """The batch's tracks of the given statuses as sensor-track reports.

    Returns the reports and how many tracks were left out because their state
    or covariance is not usable (non-finite, or a covariance not 36 values).
    """
    tracks = [t for t in batch.tracks if t.status in statuses]
    n = len(tracks)
    x = np.empty((n, 6))
    P = np.empty((n, 6, 6))
    t_ns = np.empty(n, np.int64)
    stid = np.empty(n, np.uint32)
    quality = np.empty(n)
    ok = np.ones(n, bool)
    for i, t in enumerate(tracks):
        s = t.state
        x[i] = (s.x, s.y, s.z, s.vx, s.vy, s.vz)
        if len(s.covariance) == 36:
            P[i] = np.asarray(s.covariance).reshape(6, 6)
        else:
            ok[i] = False
        t_ns[i] = t.last_update_time_ns
        # Site track ids are counters from 1; one past 32 bits folds (never
        # seen in practice: 4e9 tracks) and is still unique enough for association.
        stid[i] = t.track_id & _U32
        quality[i] = t.quality
    ok &= np.isfinite(x).all(axis=1) & np.isfinite(P).all(axis=(1, 2))
    bad = int(n - ok.sum())
    if bad:
        x, P, t_ns, stid, quality = x[ok], P[ok], t_ns[ok], stid[ok], quality[ok]
        n = len(t_ns)
    return (
        ReportArrays(
            sensor=np.full(n, sensor_index, np.int32),
            sensor_track_id=stid,
            kind=np.full(n, KIND_SENSOR_TRACK, np.int8),
            t_ns=t_ns,
            x=x,
            P=0.5 * (P + np.swapaxes(P, 1, 2)),
            quality=quality,
            polar=np.full((n, 4), np.nan),
            polar_sigma=np.full((n, 4), np.nan),
        ),
        bad,
    )


class SiteInput:
    """The handler of one site's pictures (called by the MQTT session and the NATS fast path)."""

    def __init__(
        self,
        site: SiteConfig,
        federation: FederationConfig,
        reports: Topic[ReportsIn],
        stats: DeviceStats,
        sensor_index: int,
        wall_ns: Callable[[], int] = time.time_ns,
        mono: Callable[[], float] = time.monotonic,
    ) -> None:
        self.site = site
        self.federation = federation
        self.reports = reports
        self.stats = stats
        self.sensor_index = sensor_index
        self.device_id = f"site:{site.gateway_id}"
        self.topic = f"{site.topic_prefix}/{site.gateway_id}/tracks"
        self.statuses = frozenset(_STATUS[s] for s in site.statuses)
        self._wall_ns = wall_ns
        self._mono = mono
        self.epoch = -1
        self.last_seq = 0
        #: The first sequence seen of the current epoch (a theatre that starts
        #: after its site has no way to know what came before).
        self.first_seq = 0
        # Sequences used, to tell duplicates apart: as many as the MQTT backstop
        # may lag behind the fast path (a failover's backlog), in order and as a set.
        self._recent: deque[int] = deque()
        self._recent_set: set[int] = set()
        #: Sequence numbers skipped -> monotonic time they were found missing.
        self.missing: dict[int, float] = {}
        #: Batches used, and the UTC ns of the last one's picture time.
        self.used = 0
        self.last_time_ns = 0
        #: Batches used by the path that brought them first: ``mqtt`` (a topic) or ``nats`` (a subject).
        self.used_by_path: Counter[str] = Counter()
        #: Monotonic time of every batch used (bounded): the bench's picture outage.
        self.used_mono: deque[float] = deque(maxlen=100_000)

    def __call__(self, topic: str, payload: bytes) -> None:
        st = self.stats
        now = self._wall_ns()
        st.frames_in += 1
        st.bytes_in += len(payload)
        st.last_frame_time_ns = now
        st.last_frame_mono = self._mono()
        self.settle()
        reason = self._take(payload, now)
        if reason is None:
            self.used_by_path["mqtt" if "/" in topic else "nats"] += 1
            self.used_mono.append(st.last_frame_mono)
        else:
            st.drop(reason)
            if st.frames_in == sum(n for r, n in st.drops.items() if r != "gap"):
                st.set_state(health_pb2.DEVICE_STATE_DEGRADED, f"all input rejected ({reason})")

    def settle(self) -> None:
        """Count as ``gap`` the missing pictures that waited ``gap_wait_s`` in vain."""
        if self.missing:
            limit = self._mono() - self.federation.gap_wait_s
            self._lose([s for s, t in self.missing.items() if t <= limit])

    def _lose(self, seqs: list[int]) -> None:
        for s in seqs:
            del self.missing[s]
        if seqs:
            self.stats.drop("gap", len(seqs))

    def _take(self, payload: bytes, now: int) -> str | None:
        if len(payload) > MAX_BYTES:
            return "too_large"
        try:
            batch = track_pb2.TrackBatch.FromString(payload)
        except DecodeError:
            return "decode"
        if batch.gateway_id != self.site.gateway_id:
            return "wrong_gateway"
        if len(batch.tracks) > self.federation.max_tracks:
            return "too_large"
        epoch, seq = batch.epoch_ns, batch.batch_sequence
        if epoch < self.epoch:
            return "old_epoch"  # a picture from before the site's restart
        if epoch > self.epoch:  # the site (re)started: its sequence starts over
            self._lose(list(self.missing))  # what the old run still owed never comes now
            if self.epoch >= 0 and seq > 1:
                self.stats.drop("gap", seq - 1)  # a restart seen, its first pictures missed
            self.epoch, self.last_seq, self.first_seq = epoch, 0, seq
            self._recent.clear()
            self._recent_set.clear()
        elif seq <= self.last_seq:
            if self.missing.pop(seq, None) is not None:
                return "late"  # it came after all (a failover's redelivery): not lost, not fused
            return "duplicate" if seq in self._recent_set else "out_of_order"
        if self.last_seq and seq > self.last_seq + 1:
            skipped = seq - self.last_seq - 1
            if len(self.missing) + skipped > MAX_MISSING:
                self.stats.drop("gap", skipped)
            else:
                t = self._mono()
                self.missing.update((s, t) for s in range(self.last_seq + 1, seq))
        self.last_seq = seq
        self._recent.append(seq)
        self._recent_set.add(seq)
        if len(self._recent) > _RECENT:
            self._recent_set.discard(self._recent.popleft())
        if (now - batch.time_ns) * 1e-9 > self.federation.max_batch_age_s:
            return "stale"
        arrays, bad = batch_to_reports(batch, self.statuses, self.sensor_index)
        if bad:
            self.stats.drop("bad_state", bad)
        self.used += 1
        self.last_time_ns = batch.time_ns
        self.stats.device_time_ns = batch.time_ns
        self.stats.set_state(health_pb2.DEVICE_STATE_UP)
        self.stats.reports_out += len(arrays)
        # An empty picture still moves the site's clock: publish it so the
        # engine coasts and drops what the site no longer holds.
        self.reports.publish(ReportsIn(self.device_id, now, arrays))
        return None
