"""Another gateway's picture as this cue path's tracks (docs/federation.md §4).

A launcher site's gateway may cue its own launchers on the theatre picture
(a track that only a distant radar holds). This handler takes the theatre's
TrackBatch from the broker, uses each batch once and in order (lineage:
epoch, sequence), and puts it on a bus topic that the cue path reads instead
of the local fusion's. Rules, inhibits, authority and the audit are the
local cue path's; cues go only to the launchers this gateway owns.
"""

from __future__ import annotations

from collections import Counter

from google.protobuf.message import DecodeError

from gateway.bus import Topic
from gateway.federation.sites import MAX_BYTES
from gateway.sections.cue import CuePictureConfig
from hilgw.v1 import track_pb2

__all__ = ["PictureBridge"]


class PictureBridge:
    """Session handler: the remote picture, deduplicated and ordered, onto ``tracks``."""

    def __init__(self, config: CuePictureConfig, tracks: Topic[track_pb2.TrackBatch]) -> None:
        self.config = config
        self.tracks = tracks
        self.topic = f"{config.topic_prefix}/{config.gateway_id}/tracks"
        self._last = (-1, 0)
        #: Messages by outcome: used, duplicate_or_old, decode, wrong_gateway, too_large.
        self.counts: Counter[str] = Counter()

    def __call__(self, topic: str, payload: bytes) -> None:
        if len(payload) > MAX_BYTES:
            self.counts["too_large"] += 1
            return
        try:
            batch = track_pb2.TrackBatch.FromString(payload)
        except DecodeError:
            self.counts["decode"] += 1
            return
        if batch.gateway_id != self.config.gateway_id:
            self.counts["wrong_gateway"] += 1
            return
        key = (batch.epoch_ns, batch.batch_sequence)
        if key <= self._last:
            self.counts["duplicate_or_old"] += 1
            return
        self._last = key
        self.counts["used"] += 1
        self.tracks.publish(batch)
