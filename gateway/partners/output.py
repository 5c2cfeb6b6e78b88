"""A partner's feed: filter, delay, audit, publish (docs/partners.md).

One :class:`PartnerFeed` per ``[[partners]]`` entry. It takes the fused
picture as arrays from the fusion stage (``Gateway.pictures``), filters it
with the partner's release profile (:mod:`gateway.partners.release`), holds
it for the profile's delay, journals a digest of exactly the bytes that
leave in a hash-chained audit log (the same chain as the cue audit:
``hilgw audit verify`` checks it), and only then hands it to the partner's
own MQTT session (its own broker or topic tree, its own TLS identity).

The partner's own assessments, when ``inbound`` is configured, arrive on
``<prefix>/inbound`` and enter fusion as a low-trust source
(:mod:`gateway.partners.inbound`).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections import Counter, deque
from dataclasses import dataclass

from gateway.bus import FullPolicy, Topic
from gateway.config import MqttConfig
from gateway.cue.audit import AuditError, AuditLog
from gateway.outputs.mqtt import Outgoing
from gateway.outputs.session import MqttSession
from gateway.partners.release import Picture, ReleaseFilter
from gateway.sections.partners import PartnerConfig

__all__ = ["PartnerFeed", "partner_mqtt_config"]

log = logging.getLogger(__name__)


def partner_mqtt_config(p: PartnerConfig) -> MqttConfig:
    """The partner's broker block as the session's config (its own connection)."""
    b = p.broker
    return MqttConfig(
        broker="external",
        host=b.host,
        port=b.port,
        client_id=b.client_id,
        username=b.username,
        password=b.password,
        topic_prefix=p.prefix,
        keepalive_s=b.keepalive_s,
        queue_size=max(b.queue_size, 10),
        publish_reports=False,
        tls=b.tls,
    )


@dataclass(slots=True)
class _Held:
    due_mono: float
    payload: bytes
    sequence: int
    released: int
    withheld: dict[str, int]
    time_ns: int


class PartnerFeed:
    """Filter, delay, audit and publish one partner's picture."""

    def __init__(
        self,
        config: PartnerConfig,
        pictures: Topic[Picture],
        *,
        session: MqttSession | None = None,
        audit: AuditLog | None = None,
        ref_key: bytes | None = None,
    ) -> None:
        self.config = config
        self.filter = ReleaseFilter(config.id, config.release_as, config.profile, ref_key)
        self.session = session or MqttSession(
            partner_mqtt_config(config),
            config.release_as,
            client_id=config.broker.client_id or f"hilgw-{config.release_as}-{config.id}",
        )
        self.topic = f"{config.prefix}/{config.release_as}/picture"
        self._pictures = pictures
        self._audit = audit
        self._held: deque[_Held] = deque()
        #: Pictures by fate: ``released`` (handed to the session), ``superseded``
        #: (a newer one came before max_rate_hz allowed a send), ``delay_line_full``,
        #: ``audit_failed`` (not sent: no journal, no release).
        self.pictures: Counter[str] = Counter()
        #: Tracks withheld, by reason (release.REASONS); tracks released.
        self.withheld: Counter[str] = Counter()
        self.tracks_released = 0
        self.audit_ok = True

    def open_audit(self) -> AuditLog:
        if self._audit is None:
            self._audit, _ = AuditLog.open(self.config.audit_log)
        return self._audit

    def take(self, pic: Picture, now_mono: float) -> None:
        """Filter one picture now and hold it until its release time."""
        rel = self.filter.apply(pic)
        self.withheld.update(rel.withheld)
        self._held.append(
            _Held(
                now_mono + self.config.profile.delay_s,
                rel.picture.SerializeToString(),
                rel.picture.sequence,
                rel.released,
                dict(rel.withheld),
                rel.picture.time_ns,
            )
        )
        # A delay line longer than delay x rate means the sender is stuck: the
        # oldest pictures are the least useful, and each is counted.
        limit = max(4, int(self.config.profile.delay_s * self.config.profile.max_rate_hz) + 4)
        while len(self._held) > limit:
            self._held.popleft()
            self.pictures["delay_line_full"] += 1

    def release_due(self, now_mono: float) -> int:
        """Journal, then publish every held picture whose time has come."""
        audit = self.open_audit()
        n = 0
        while self._held and self._held[0].due_mono <= now_mono:
            h = self._held.popleft()
            digest = hashlib.sha256(h.payload).hexdigest()
            try:
                audit.append(
                    "release",
                    {
                        "partner": self.config.id,
                        "topic": self.topic,
                        "sequence": h.sequence,
                        "time_ns": h.time_ns,
                        "tracks": h.released,
                        "withheld": h.withheld,
                        "bytes": len(h.payload),
                        "sha256": digest,
                    },
                    time.time_ns(),
                )
                audit.flush()
            except AuditError as exc:
                # Nothing leaves that is not journaled first.
                self.audit_ok = False
                self.pictures["audit_failed"] += 1
                log.error("partner %s: release not journaled, not sent: %s", self.config.id, exc)
                continue
            self.audit_ok = True
            self.session.enqueue(Outgoing(self.topic, h.payload, 1, False, "partner"))
            self.pictures["released"] += 1
            self.tracks_released += h.released
            n += 1
        return n

    async def run(self) -> None:
        """Until cancelled: take the freshest picture at most max_rate_hz, release when due."""
        prof = self.config.profile
        sub = self._pictures.subscribe(f"partner:{self.config.id}", maxsize=1, policy=FullPolicy.DROP_OLDEST)
        period = 1.0 / prof.max_rate_hz
        last = -1e18
        pending: Picture | None = None
        self.open_audit()
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self.session.run(), name=f"partner:{self.config.id}:mqtt")
                while True:
                    # A picture that comes sooner than the rate allows waits,
                    # and a newer one replaces it: the partner always gets the
                    # freshest picture, at most max_rate_hz.
                    try:
                        async with asyncio.timeout(0.05):
                            await sub.wait()
                    except TimeoutError:
                        pass
                    for pic in sub.get_all():
                        if pending is not None:
                            self.pictures["superseded"] += 1
                        pending = pic
                    now = time.monotonic()
                    if pending is not None and now - last >= period:
                        last = now
                        self.take(pending, now)
                        pending = None
                    self.release_due(now)
        finally:
            sub.close()
