"""The fused picture as a protobuf TrackBatch: shared by the fusion stage (in
line or in a thread) and the fusion worker process, which both import it
(neither imports the other for it: no import cycle)."""

from __future__ import annotations

from gateway.fusion.api import TrackArrays
from hilgw.v1 import common_pb2, track_pb2

__all__ = ["tracks_to_proto"]


def tracks_to_proto(
    tracks: TrackArrays,
    sensor_ids: list[str],
    gateway_id: str,
    seq: int,
    t_ns: int,
    markings: list[common_pb2.Markings | None] | None = None,
) -> track_pb2.TrackBatch:
    """Render the stacked picture as one TrackBatch (protobuf is per-object by nature).

    ``markings``, by sensor index, are copied onto each contributor: the
    releasability of the data travels with it (docs/partners.md).

    Every numpy column becomes a Python list once, up front, and each track's
    scalars go in one ``add(**fields)`` call: no numpy scalar boxing or
    ``int()`` per element (issue 18). Building nested messages first and
    extending is slower: upb copies them into the batch.
    """
    m = len(tracks)
    x = tracks.x.tolist()
    P = tracks.P.reshape(m, 36).tolist()
    track_id = tracks.track_id.tolist()
    status = tracks.status.tolist()
    last_ns = tracks.t_ns.tolist()
    first_ns = tracks.first_ns.tolist()
    quality = tracks.quality.tolist()
    model = tracks.model.tolist()
    count = tracks.update_count.tolist()
    c_row = tracks.contrib_row.tolist()
    c_sensor = tracks.contrib_sensor.tolist()
    c_track = tracks.contrib_sensor_track_id.tolist()
    c_ns = tracks.contrib_t_ns.tolist()
    by_row: dict[int, list[int]] = {}
    for k, row in enumerate(c_row):
        by_row.setdefault(row, []).append(k)
    batch = track_pb2.TrackBatch(gateway_id=gateway_id, batch_sequence=seq, time_ns=t_ns)
    add = batch.tracks.add
    for i in range(m):
        st = add(
            track_id=track_id[i],
            status=status[i],  # wire value of TrackStatus
            last_update_time_ns=last_ns[i],
            first_seen_time_ns=first_ns[i],
            quality=quality[i],
            motion_model=model[i],  # wire value of MotionModel
            update_count=count[i],
        )
        s = st.state
        s.x, s.y, s.z, s.vx, s.vy, s.vz = x[i]
        s.covariance.extend(P[i])
        for k in by_row.get(i, ()):
            sensor = c_sensor[k]
            c = st.contributors.add(
                sensor_id=sensor_ids[sensor], sensor_track_id=c_track[k], last_update_time_ns=c_ns[k]
            )
            if markings is not None and (mk := markings[sensor]) is not None:
                c.markings.CopyFrom(mk)
    return batch
