"""Shared builders for the cue-path tests: keys, config, tracks, signed commands,
and a harness that joins a CueCore to in-memory fake launchers."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pymap3d

from drivers.launcher import messages as launcher_messages
from gateway.cue.audit import AuditLog
from gateway.cue.authority import parse_authority
from gateway.cue.book import Effect, Now, Publish, SendCancel, SendCue
from gateway.cue.core import CueCore
from gateway.cue.keys import Key, KeyRing, parse_keys
from gateway.cue.memory_link import FakeLauncher
from gateway.cue.outputs import state_digest
from gateway.cue.seal import KeySealer, wire_cancel, wire_cue
from gateway.cue.signing import sign
from gateway.sections.cue import CueConfig
from hilgw.v1 import cue_pb2, track_pb2

GW = "gw-test"
T0 = 1_750_000_000_000_000_000  # UTC ns
M0 = 5_000_000_000_000  # monotonic ns
OP_SECRET = bytes.fromhex("11" * 32)
OP2_SECRET = bytes.fromhex("22" * 32)
L1_SECRET = bytes.fromhex("a1" * 32)
L2_SECRET = bytes.fromhex("a2" * 32)
#: The launchers' wire keys (ICD §7.2): what their links seal cues with.
WIRE_ID = 1
WIRE_KEY_ID = 1
WIRE_KEYS = {"L1": L1_SECRET, "L2": L2_SECRET}
GW_SEED = bytes.fromhex("33" * 32)  # the gateway's Ed25519 signing seed ([gateway.gw-key])
KEYS = KeyRing(
    operator={"op-alice": Key("op-alice", OP_SECRET, "alice"), "op-any": Key("op-any", OP2_SECRET)},
    launcher={"lk-1": Key("lk-1", L1_SECRET), "lk-2": Key("lk-2", L2_SECRET)},
    gateway=parse_keys({"gateway": {"gw-key": {"secret": GW_SEED.hex()}}}).gateway,
)
SITE1 = (54.0, 10.0, 0.0)
SITE2 = (55.0, 12.0, 0.0)


def cue_config(tmp: Path | None = None, **over: Any) -> CueConfig:
    raw: dict[str, Any] = {
        "keys_file": str((tmp or Path("/nonexistent")) / "keys.toml"),
        "audit_path": str((tmp or Path("/nonexistent")) / "audit.jsonl"),
        "launchers": [
            {
                "id": "L1",
                "coverage": {
                    "lat_deg": SITE1[0],
                    "lon_deg": SITE1[1],
                    "alt_m": SITE1[2],
                    "max_range_m": 100_000,
                },
            },
            {
                "id": "L2",
                "coverage": {
                    "lat_deg": SITE2[0],
                    "lon_deg": SITE2[1],
                    "alt_m": SITE2[2],
                    "max_range_m": 100_000,
                },
            },
        ],
        "inhibit": {"drop_to_hold_on": ["time_sync"]},
    }
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(raw.get(k), dict):
            raw[k] = {**raw[k], **v}
        else:
            raw[k] = v
    return CueConfig.model_validate(raw)


def wire_tag_verifies(msg: cue_pb2.EngagementCue | cue_pb2.CueCancel, secret: bytes) -> bool:
    """Does ``msg.mac`` verify as the launcher-wire tag of ``msg`` (ICD §7.1)?
    Recomputed with a plain HMAC over the ICD's canonical bytes, not through the
    codec's signer: the one MAC a cue carries is the one its launcher checks."""
    if isinstance(msg, cue_pb2.EngagementCue):
        signed = launcher_messages.encode_cue(wire_cue(msg, WIRE_ID, int(msg.key_id)))
        domain = launcher_messages.DOMAIN_CUE
    else:
        signed = launcher_messages.cancel_signed_bytes(wire_cancel(msg, WIRE_ID, int(msg.key_id)))
        domain = launcher_messages.DOMAIN_CANCEL
    want = hmac.new(secret, domain + signed, hashlib.sha256).digest()
    return hmac.compare_digest(want, msg.mac)


def make_track(
    track_id: int,
    lat: float = 54.2,
    lon: float = 10.1,
    alt: float = 5000.0,
    *,
    t_ns: int = T0,
    status: int = track_pb2.TRACK_STATUS_CONFIRMED,
    quality: float = 0.9,
    sensors: Iterable[str] = ("radar-1",),
    model: int = track_pb2.MOTION_MODEL_BALLISTIC,
) -> track_pb2.SystemTrack:
    x, y, z = pymap3d.geodetic2ecef(lat, lon, alt)
    t = track_pb2.SystemTrack(
        track_id=track_id, quality=quality, last_update_time_ns=t_ns, first_seen_time_ns=t_ns
    )
    t.status, t.motion_model = status, model  # type: ignore[assignment]  # enum wire values
    t.state.x, t.state.y, t.state.z = float(x), float(y), float(z)
    t.state.covariance.extend([1.0 if i % 7 == 0 else 0.0 for i in range(36)])
    for s in sensors:
        t.contributors.add(sensor_id=s, sensor_track_id=track_id, last_update_time_ns=t_ns)
    return t


def make_batch(tracks: Iterable[track_pb2.SystemTrack], t_ns: int = T0, seq: int = 1) -> track_pb2.TrackBatch:
    b = track_pb2.TrackBatch(gateway_id=GW, batch_sequence=seq, time_ns=t_ns)
    b.tracks.extend(tracks)
    return b


def authority_command(
    requested: str | int,
    seq: int,
    t_ns: int,
    *,
    key_id: str = "op-alice",
    secret: bytes = OP_SECRET,
    operator: str = "alice",
    gateway: str = GW,
) -> cue_pb2.AuthorityCommand:
    value: Any = parse_authority(requested) if isinstance(requested, str) else requested
    cmd = cue_pb2.AuthorityCommand(
        requested=value,
        operator_id=operator,
        sequence=seq,
        timestamp_ns=t_ns,
        gateway_id=gateway,
        reason="test",
    )
    sign(cmd, key_id, secret)
    return cmd


def cue_command(
    approve: bool,
    cue_id: int,
    seq: int,
    t_ns: int,
    *,
    key_id: str = "op-alice",
    secret: bytes = OP_SECRET,
    operator: str = "alice",
    bind: CueCore | None = None,
) -> cue_pb2.CueCommand:
    """A signed approve/reject; ``bind``: take the track and state digest of the cue
    from this core, as an operator's CLI takes them from the signed cue list."""
    action = cue_pb2.CUE_ACTION_APPROVE if approve else cue_pb2.CUE_ACTION_REJECT
    cmd = cue_pb2.CueCommand(
        action=action, cue_id=cue_id, operator_id=operator, sequence=seq, timestamp_ns=t_ns, gateway_id=GW
    )
    cue = bind.cues.get(cue_id) if bind is not None else None
    if cue is not None and cue.message is not None:
        cmd.track_id, cmd.state_digest = cue.track_id, state_digest(cue.message)
        cmd.expires_ns = t_ns + 30 * 10**9
    sign(cmd, key_id, secret)
    return cmd


@dataclass
class Harness:
    """A core with in-memory audit and fake launchers; time moves only by :meth:`advance`."""

    config: CueConfig = field(default_factory=cue_config)
    audit: AuditLog = field(default_factory=lambda: AuditLog(None))
    history: list[dict[str, Any]] = field(default_factory=list)
    now: Now = field(default_factory=lambda: Now(T0, M0))
    launcher_skew_ns: int = 0
    on_deliver: Callable[[cue_pb2.EngagementCue], None] | None = None
    auto_ack: bool = True
    seq: int = 0

    def __post_init__(self) -> None:
        self.sealers = {lid: KeySealer(WIRE_ID, {WIRE_KEY_ID: secret}) for lid, secret in WIRE_KEYS.items()}
        self.core = CueCore(self.config, KEYS, GW, self.audit, self.now, self.history, sealers=self.sealers)
        self.launchers = {
            lc.id: FakeLauncher(
                lc.id,
                {WIRE_KEY_ID: WIRE_KEYS[lc.id]},
                lambda: self.now.wall_ns + self.launcher_skew_ns,
                wire_id=WIRE_ID,
            )
            for lc in self.config.launchers
        }
        self.published: list[Publish] = []
        self.pending_acks: list[cue_pb2.CueAck] = []
        self.sent: list[cue_pb2.EngagementCue] = []
        self.apply(self.core.tick(self.now))

    def apply(self, effects: list[Effect]) -> None:
        self.audit.flush()
        for e in effects:
            if isinstance(e, SendCue):
                assert self.audit.pending == 0
                self.sent.append(e.cue)
                if self.on_deliver is not None:
                    self.on_deliver(e.cue)
                ack = self.launchers[e.launcher_id].receive_cue(e.sealed)
                if ack is not None:
                    self.pending_acks.append(ack)
            elif isinstance(e, SendCancel):
                self.launchers[e.launcher_id].receive_cancel(e.sealed)
            else:
                self.published.append(e)
        if self.auto_ack:
            self.deliver_acks()

    def deliver_acks(self) -> None:
        while self.pending_acks:
            ack = self.pending_acks.pop(0)
            self.apply(self.core.on_ack(ack, self.now))

    def advance(self, seconds: float) -> None:
        self.now = self.now.plus(seconds)
        self.apply(self.core.tick(self.now))

    def heartbeat(self, *launchers: str) -> None:
        for lid in launchers or tuple(self.launchers):
            self.apply(self.core.on_heartbeat(lid, self.now))

    def tracks(self, *tracks: track_pb2.SystemTrack) -> None:
        self.apply(self.core.on_tracks(make_batch(tracks, self.now.wall_ns), self.now))

    def set_authority(self, name: str, **kw: Any) -> None:
        self.seq += 1
        cmd = authority_command(name, self.seq, self.now.wall_ns, **kw)
        self.apply(self.core.on_authority_command(cmd.SerializeToString(), self.now))

    def approve(self, cue_id: int, approve: bool = True) -> None:
        self.seq += 1
        cmd = cue_command(approve, cue_id, self.seq, self.now.wall_ns, bind=self.core)
        self.apply(self.core.on_cue_command(cmd.SerializeToString(), self.now))

    def kinds(self) -> list[str]:
        return [r["kind"] for r in self.audit.records]

    def results(self) -> list[cue_pb2.CommandResult]:
        return [p.message for p in self.published if isinstance(p.message, cue_pb2.CommandResult)]
