"""The cue state machine: approvals, acks, resends, inhibits; and a hypothesis
RuleBasedStateMachine whose invariant is that no cue reaches a launcher unless
authority allowed it at that moment, and none reaches a launcher whose
*authenticated* heartbeat is lost: heartbeats and acks cross the real ICD v2
codecs (docs/icd/launcher.md §7.5), and the machine also injects forged,
bit-flipped, replayed, stale and v1 heartbeats and acks.

Long run (>= 10,000 sequences; minutes)::

    .venv/bin/pytest tests/unit/test_cue_statemachine.py -m slow -q
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from drivers.base import Rejected, Role
from drivers.launcher import Ack as WireAck
from drivers.launcher import AckResult, LauncherCanCodec, LauncherState, LauncherStatus, NackReason
from gateway.bus import Topic
from gateway.cue.audit import AuditLog, verify_file
from gateway.cue.book import Now
from gateway.cue.core import CueCore
from gateway.cue.driver_link import link_event
from gateway.cue.link import Ack, Heartbeat, ReplyRejected
from gateway.cue.memory_link import FakeLauncher, MemoryLink
from gateway.cue.path import CuePath
from gateway.sections.cue import CueConfig
from hilgw.can import CanFrame
from hilgw.v1 import cue_pb2, track_pb2
from tests.unit.cue_support import (
    GW,
    KEYS,
    L1_SECRET,
    OP2_SECRET,
    Harness,
    authority_command,
    cue_command,
    cue_config,
    make_batch,
    make_track,
)
from tests.waiting import eventually

HOLD, APPROVAL, AUTO = cue_pb2.AUTHORITY_HOLD, cue_pb2.AUTHORITY_CUE_ON_APPROVAL, cue_pb2.AUTHORITY_AUTO_CUE
S = cue_pb2


def _ready(h: Harness, authority: str) -> None:
    h.heartbeat()
    h.set_authority(authority)


# --- deterministic behaviour --------------------------------------------------------------------


def test_hold_withholds_and_says_why() -> None:
    h = Harness()
    h.heartbeat()
    h.tracks(make_track(1, t_ns=h.now.wall_ns))
    assert not h.sent
    withheld = [r["data"] for r in h.audit.records if r["kind"] == "withheld"]
    assert withheld[-1] == {"track": 1, "launcher": "L1", "why": "authority_hold"}


def test_approval_flow() -> None:
    h = Harness()
    _ready(h, "cue_on_approval")
    h.tracks(make_track(1, t_ns=h.now.wall_ns))
    assert not h.sent
    (pending,) = h.core.open_cues()
    assert pending.status == S.CUE_STATUS_PENDING_APPROVAL
    h.approve(pending.cue_id)
    (cue,) = h.launchers["L1"].accepted
    assert cue.cue_id == pending.cue_id
    kinds = h.kinds()
    assert kinds.index("approved") < kinds.index("cue_sent") < kinds.index("acked")
    sent = next(r for r in h.audit.records if r["kind"] == "cue_sent")["data"]
    assert (sent["approved_by"], sent["authority"]) == ("alice", "CUE_ON_APPROVAL")


def test_reject_and_approval_timeout() -> None:
    h = Harness()
    _ready(h, "cue_on_approval")
    h.tracks(make_track(1, t_ns=h.now.wall_ns), make_track(2, lat=54.3, t_ns=h.now.wall_ns))
    a, b = h.core.open_cues()
    h.approve(a.cue_id, approve=False)
    assert h.kinds()[-1] != "cue_sent"
    for _ in range(310):  # approval_timeout_s = 30
        h.advance(0.1)
        h.heartbeat()
        h.tracks(make_track(1, t_ns=h.now.wall_ns), make_track(2, lat=54.3, t_ns=h.now.wall_ns))
    assert not h.sent
    expired = [r["data"] for r in h.audit.records if r["kind"] == "expired"]
    assert {"cue_id": b.cue_id, "launcher": "L1", "track": 2, "why": "approval_timeout"} in expired
    assert any(r["kind"] == "rejected" and r["data"]["cue_id"] == a.cue_id for r in h.audit.records)


def test_approval_of_unknown_cue_is_audited_and_sends_nothing() -> None:
    h = Harness()
    _ready(h, "cue_on_approval")
    h.approve(999)
    assert h.kinds()[-1] == "approval_ignored"
    assert not h.sent


def test_ack_timeout_resends_with_a_new_sequence_then_fails() -> None:
    h = Harness()
    _ready(h, "auto_cue")
    h.launchers["L1"].drop_acks = True
    for _ in range(30):
        h.heartbeat()
        h.tracks(make_track(1, t_ns=h.now.wall_ns))
        h.advance(0.1)
    cue_sends = [c for c in h.sent if c.cue_id == h.sent[0].cue_id]
    assert [c.attempt for c in cue_sends] == [0, 1, 2]  # max_retries = 2
    assert len({c.sequence for c in cue_sends}) == 3
    kinds = h.kinds()
    assert kinds.count("cue_resent") >= 2
    assert "failed" in kinds
    assert h.launchers["L1"].cancels[0].cue_id == cue_sends[0].cue_id  # the launcher may hold it: cancel


def test_nack_ends_the_cue_and_cools_down() -> None:
    h = Harness()
    _ready(h, "auto_cue")
    h.launcher_skew_ns = 60 * 10**9  # the launcher's clock is a minute ahead: every cue is stale
    h.tracks(make_track(1, t_ns=h.now.wall_ns))
    assert h.launchers["L1"].rejected[0][0] == "stale"
    assert "nacked" in h.kinds()
    n = len(h.sent)
    h.advance(0.5)
    h.heartbeat()
    h.tracks(make_track(1, t_ns=h.now.wall_ns))
    assert len(h.sent) == n  # within retry_cooldown_s
    assert h.kinds()[-1] == "withheld"


@pytest.mark.parametrize("tick_s", [0.1, 0.05])
def test_heartbeat_loss_inhibits_within_250_ms(tick_s: float) -> None:
    h = Harness()
    _ready(h, "auto_cue")
    h.tracks(make_track(1, t_ns=h.now.wall_ns))
    assert h.launchers["L1"].accepted
    last_hb = h.now.mono_ns
    t = 0.0
    while not h.launchers["L1"].cancels:
        h.advance(tick_s)
        t += tick_s
        h.tracks(make_track(1, t_ns=h.now.wall_ns))
        assert t < 5
    lost_after = (h.now.mono_ns - last_hb) / 1e9 - 1.0  # heartbeat_timeout_s = 1
    assert 0 < lost_after <= 0.25
    assert h.launchers["L1"].cancels[0].reason.startswith("inhibit:heartbeat_lost")
    assert h.core.authority.value == AUTO  # not configured to drop to HOLD on heartbeat


@pytest.mark.parametrize("tick_s", [0.1, 0.05])
def test_heartbeats_that_stop_verifying_inhibit_within_250_ms_and_are_audited(tick_s: float) -> None:
    """A launcher whose heartbeats keep coming but fail verification (ICD v2 §7.5)
    is lost exactly as a silent one: inhibited within the same 250 ms bound."""
    h = Harness()
    _ready(h, "auto_cue")
    h.tracks(make_track(1, t_ns=h.now.wall_ns))
    assert h.launchers["L1"].accepted
    last_hb = h.now.mono_ns
    t, n = 0.0, 0
    while not h.launchers["L1"].cancels:
        h.advance(tick_s)
        t += tick_s
        h.apply(h.core.on_reply_rejected("L1", "LAUNCHER_STATUS", "auth_bad_mac", h.now))
        n += 1
        h.tracks(make_track(1, t_ns=h.now.wall_ns))
        assert t < 5
    lost_after = (h.now.mono_ns - last_hb) / 1e9 - 1.0  # heartbeat_timeout_s = 1
    assert 0 < lost_after <= 0.25
    assert h.launchers["L1"].cancels[0].reason == "inhibit:heartbeat_lost,heartbeat_unverified"
    rejected = [r["data"] for r in h.audit.records if r["kind"] == "reply_rejected"]
    # Audited at the 1st, 2nd, 4th, 8th, ... rejection of the kind: bounded under a flood.
    assert [r["count"] for r in rejected] == [c for c in (1, 2, 4, 8, 16, 32) if c <= n]
    assert rejected[0] == {
        "launcher": "L1", "message": "LAUNCHER_STATUS", "reason": "auth_bad_mac", "count": 1
    }  # fmt: skip
    h.heartbeat()  # an authenticated one: alive again, the unverified count starts over
    assert not h.core.launchers["L1"].inhibits
    assert h.core.launchers["L1"].unverified_heartbeats == 0


def test_heartbeat_loss_drops_to_hold_where_configured() -> None:
    h = Harness(config=cue_config(inhibit={"drop_to_hold_on": ["launcher_heartbeat"]}))
    _ready(h, "auto_cue")
    h.advance(1.2)
    assert h.core.authority.value == HOLD
    assert h.core.authority.changed_by == "inhibit"


def test_time_sync_loss_inhibits_and_drops_to_hold() -> None:
    h = Harness()
    _ready(h, "auto_cue")
    h.tracks(make_track(1, t_ns=h.now.wall_ns))
    h.apply(h.core.on_time_sync(False, "chrony unsynchronised", h.now))
    assert h.core.authority.value == HOLD
    assert h.launchers["L1"].cancels
    assert "time_sync" in h.core.inhibits()
    h.apply(h.core.on_time_sync(True, "ok", h.now))
    assert h.core.authority.value == HOLD  # only an operator raises it again


def test_sensors_lost_inhibits_the_track() -> None:
    h = Harness(config=cue_config(inhibit={"drop_to_hold_on": ["sensors"]}))
    _ready(h, "auto_cue")
    h.tracks(make_track(1, sensors=("r1", "r2"), t_ns=h.now.wall_ns))
    assert h.launchers["L1"].accepted
    h.apply(h.core.on_sensor_health("r1", False, h.now))
    assert not h.launchers["L1"].cancels  # one contributor left
    h.apply(h.core.on_sensor_health("r2", False, h.now))
    assert h.launchers["L1"].cancels[0].reason == "inhibit:sensors_lost"
    assert h.core.authority.value == HOLD


def test_silent_contributors_count_as_lost() -> None:
    h = Harness()
    _ready(h, "auto_cue")
    trk = make_track(1, t_ns=h.now.wall_ns)
    trk.contributors[0].last_update_time_ns = h.now.wall_ns - 4 * 10**9  # sensor_timeout_s = 3
    h.tracks(trk)
    assert not h.sent
    assert any(
        r["kind"] == "withheld" and r["data"]["why"] == "inhibit:sensors_lost" for r in h.audit.records
    )


def test_lowering_authority_cancels_automatic_cues() -> None:
    h = Harness()
    _ready(h, "auto_cue")
    h.tracks(make_track(1, t_ns=h.now.wall_ns))
    h.set_authority("cue_on_approval")
    assert h.launchers["L1"].cancels[0].reason == "authority_lowered"
    h.set_authority("hold")
    h.tracks(make_track(1, t_ns=h.now.wall_ns))
    assert len(h.launchers["L1"].accepted) == 1


def test_restart_continues_sequences_and_cue_ids(tmp_path: Path) -> None:
    cfg = cue_config(tmp_path)
    audit, hist = AuditLog.open(cfg.audit_path, fsync=False)
    h = Harness(config=cfg, audit=audit, history=hist)
    _ready(h, "auto_cue")
    h.tracks(make_track(1, t_ns=h.now.wall_ns))
    first = h.launchers["L1"].accepted[-1]
    audit.close()
    audit2, hist2 = AuditLog.open(cfg.audit_path, fsync=False)
    core = CueCore(cfg, KEYS, GW, audit2, h.now, hist2, sealers=h.sealers)
    assert core.authority.value == HOLD
    assert core.launchers["L1"].sequence >= first.sequence
    assert core.next_cue_id > first.cue_id
    audit2.close()


# --- the property: no cue without authority ------------------------------------------------------

TRACKS = {1: ((54.2, 10.1), "radar-1"), 2: ((55.1, 12.1), "radar-2")}  # in L1's, in L2's volume
HB_TIMEOUT_NS = 10**9
WIRE_ID = {"L1": 1, "L2": 2}  # launcher ids on the wire
WIRE_KEYS = {7: bytes(range(7, 39))}
REPLY_MAX_AGE_NS = 10**9
FORGERIES = ("wrong_key", "bit_flip", "replay", "stale", "v1", "unknown_key")


class CuePathMachine(RuleBasedStateMachine):
    """Drives a core (on-disk audit, restarts) with a model of what authority allows."""

    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="cue-sm-"))
        self.cfg = cue_config(self.dir, inhibit={"drop_to_hold_on": ["time_sync", "launcher_heartbeat"]})
        audit, hist = AuditLog.open(self.cfg.audit_path, fsync=False)
        self.h = Harness(config=self.cfg, audit=audit, history=hist)
        self.h.on_deliver = self._check_delivery
        self.deliveries = 0
        # The model: what the spec says authority and gates are.
        self.m_auth = HOLD
        self.m_approved: set[int] = set()
        self.m_hw: dict[str, int] = {}
        self.m_hb: dict[str, int | None] = {"L1": None, "L2": None}
        self.m_hb_lost: dict[str, bool] = {"L1": False, "L2": False}
        self.m_link = {"L1": True, "L2": True}
        self.m_sync = True
        self.m_sensor_up = {"radar-1": True, "radar-2": True}
        self.m_present: set[int] = set()
        self.m_picture_mono: int | None = None
        self.true_wall = self.h.now.wall_ns  # the operators' and launchers' clock
        # The ICD v2 wire of each launcher: its codec signs, the gateway's verifies.
        self.wire = {
            lid: (
                LauncherCanCodec(Role.DEVICE, launcher_id=w, keys=WIRE_KEYS),
                LauncherCanCodec(
                    Role.GATEWAY, launcher_id=w, keys=WIRE_KEYS, max_reply_age_ns=REPLY_MAX_AGE_NS
                ),
            )
            for lid, w in WIRE_ID.items()
        }
        self.heard: dict[str, list[CanFrame]] = {"L1": [], "L2": []}  # authentic, accepted: replay material
        self.sent_commands: list[tuple[str, bytes, cue_pb2.AuthorityCommand | cue_pb2.CueCommand]] = []
        self.seq = {"op-alice": 0, "op-any": 0}

    def teardown(self) -> None:
        self.h.audit.close()
        res = verify_file(self.cfg.audit_path)
        shutil.rmtree(self.dir, ignore_errors=True)
        assert res.ok, res

    # -- the invariant, checked at the moment of each delivery --

    def _check_delivery(self, cue: cue_pb2.EngagementCue) -> None:
        self.deliveries += 1
        now = self.h.now
        lid = cue.launcher_id
        verifier = self.wire[lid][1].verifier
        assert verifier is not None
        verifier.expect(cue.sequence, cue.cue_id)  # on the wire: the gateway's codec sent it
        assert self.m_auth == AUTO or (self.m_auth == APPROVAL and cue.cue_id in self.m_approved), (
            f"cue {cue.cue_id} delivered under {self.m_auth}, approved={sorted(self.m_approved)}"
        )
        hb = self.m_hb[lid]
        assert self.m_link[lid]
        assert hb is not None
        assert now.mono_ns - hb <= HB_TIMEOUT_NS
        assert self.m_sync
        assert cue.system_track_id in self.m_present
        assert self.m_sensor_up[TRACKS[cue.system_track_id][1]]
        assert self.m_picture_mono is not None
        assert now.mono_ns - self.m_picture_mono <= 2 * 10**9

    @invariant()
    def launchers_never_see_forged_or_replayed_cues(self) -> None:
        for fake in self.h.launchers.values():
            assert {why for why, _ in fake.rejected} <= {"stale", "not_yet_valid"}, fake.rejected

    @invariant()
    def state_matches_model(self) -> None:
        assert self.h.core.authority.value == self.m_auth

    @invariant()
    def heartbeat_loss_matches_model(self) -> None:
        """Only an authenticated heartbeat keeps a launcher alive: the core's
        ``heartbeat_lost`` is the model's, whatever forgeries came in between."""
        for lid, lau in self.h.core.launchers.items():
            assert ("heartbeat_lost" in lau.inhibits) == self.m_hb_lost[lid], (lid, lau.inhibits)

    # -- model helpers --

    def _model_hold(self) -> None:
        self.m_auth = HOLD

    def _model_after_time(self) -> None:
        for lid, hb in self.m_hb.items():
            lost = self.m_link[lid] and hb is not None and self.h.now.mono_ns - hb > HB_TIMEOUT_NS
            if lost and not self.m_hb_lost[lid]:
                self._model_hold()
            self.m_hb_lost[lid] = lost

    def _valid(self, cmd: cue_pb2.AuthorityCommand | cue_pb2.CueCommand, forged: bool) -> bool:
        age = self.h.now.wall_ns - cmd.timestamp_ns
        late_hold = isinstance(cmd, cue_pb2.AuthorityCommand) and cmd.requested == HOLD  # never stale
        return (
            not forged
            and cmd.sequence > self.m_hw.get(cmd.key_id, 0)
            and age >= -2 * 10**9
            and (age <= 5 * 10**9 or late_hold)
            and (not isinstance(cmd, cue_pb2.AuthorityCommand) or cmd.requested in (HOLD, APPROVAL, AUTO))
        )

    def _submit(self, kind: str, cmd: Any, forged: bool) -> None:
        valid = self._valid(cmd, forged)
        if valid:
            self.m_hw[cmd.key_id] = cmd.sequence
            if kind == "authority":
                self.m_auth = cmd.requested
            elif cmd.action == S.CUE_ACTION_APPROVE:
                self.m_approved.add(cmd.cue_id)
        payload = cmd.SerializeToString()
        self.sent_commands.append((kind, payload, cmd))
        h = self.h
        if kind == "authority":
            h.apply(h.core.on_authority_command(payload, h.now))
        else:
            h.apply(h.core.on_cue_command(payload, h.now))
        last = h.results()[-1]
        assert last.accepted == valid, (last.reason, valid)

    # -- rules --

    @rule(
        level=st.sampled_from([HOLD, APPROVAL, AUTO, AUTO, 7]),
        key=st.sampled_from(["op-alice", "op-any"]),
        seq_step=st.sampled_from([1, 1, 1, 0, -1, 5]),
        age_s=st.sampled_from([0.0, 0.0, 1.0, 4.9, 6.0, -1.0, -3.0]),
        forge=st.sampled_from([False, False, False, True]),
    )
    def authority(self, level: int, key: str, seq_step: int, age_s: float, forge: bool) -> None:
        self.seq[key] = max(0, self.seq[key] + seq_step)
        secret = {"op-alice": bytes.fromhex("11" * 32), "op-any": OP2_SECRET}[key]
        operator = "alice" if key == "op-alice" else "bob"
        cmd = authority_command(
            level,
            self.seq[key],
            self.true_wall - int(age_s * 1e9),
            key_id=key,
            secret=secret,
            operator=operator,
        )
        if forge:
            cmd.reason = "tampered after signing"
        self._submit("authority", cmd, forge)

    @rule(approve=st.booleans(), pick=st.integers(0, 3), stale=st.booleans())
    def approve_or_reject(self, approve: bool, pick: int, stale: bool) -> None:
        pending = [c.cue_id for c in self.h.core.open_cues() if c.status == S.CUE_STATUS_PENDING_APPROVAL]
        cue_id = pending[pick % len(pending)] if pending else 1000 + pick
        self.seq["op-alice"] += 1
        t = self.true_wall - (10 * 10**9 if stale else 0)
        cmd = cue_command(approve, cue_id, self.seq["op-alice"], t, bind=self.h.core)
        self._submit("cue", cmd, False)

    @precondition(lambda self: bool(self.sent_commands))
    @rule(pick=st.integers(0, 10**6))
    def replay(self, pick: int) -> None:
        kind, _, cmd = self.sent_commands[pick % len(self.sent_commands)]
        forged = kind == "authority" and not _authentic(cmd)
        self._submit(kind, cmd, forged)

    # -- the wire (ICD v2): what the gateway's codec passes reaches the core as the driver link does --

    def _feed(self, which: str, frames: list[CanFrame]) -> list[object]:
        h = self.h
        out: list[object] = []
        for ev in self.wire[which][1].receive_frames(frames, h.now.wall_ns):
            out.append(ev)
            assert isinstance(ev, WireAck | LauncherStatus | Rejected)
            item = link_event(which, ev)
            if isinstance(item, Heartbeat):
                h.apply(h.core.on_heartbeat(which, h.now, item.ok, item.detail))
            elif isinstance(item, ReplyRejected):
                h.apply(h.core.on_reply_rejected(which, item.message, item.reason, h.now))
            elif isinstance(item, Ack):
                h.apply(h.core.on_ack(item.ack, h.now))
        return out

    def _status(self, which: str, t_ns: int | None = None) -> LauncherStatus:
        t = self.true_wall if t_ns is None else t_ns
        return LauncherStatus(
            launcher_id=WIRE_ID[which], state=LauncherState.READY, sequence=0, launcher_time_ns=t
        )

    def _forge(self, frame: CanFrame, how: str, bit: int, which: str) -> CanFrame:
        """``frame`` (just signed, never delivered) turned into what an attacker sends."""
        data = bytearray(frame.data)
        if how == "bit_flip":
            data[bit // 8] ^= 1 << (bit % 8)
        elif how == "unknown_key":
            data[24:26] = (8).to_bytes(2, "little")
        return frame._replace(data=bytes(data))

    @rule(which=st.sampled_from(["L1", "L2"]))
    def heartbeat(self, which: str) -> None:
        # Authentic: it counts if the gateway's clock is within the age limit of the launcher's.
        fresh = abs(self.h.now.wall_ns - self.true_wall) <= REPLY_MAX_AGE_NS
        if self.m_link[which] and fresh:
            self.m_hb[which] = self.h.now.mono_ns
            self.m_hb_lost[which] = False
        frames = self.wire[which][0].send(self._status(which))
        (out,) = self._feed(which, frames)
        assert isinstance(out, LauncherStatus) == fresh, out
        if fresh:
            self.heard[which].extend(frames)

    @rule(
        which=st.sampled_from(["L1", "L2"]),
        how=st.sampled_from(FORGERIES),
        bit=st.integers(0, 8 * 48 - 1),
    )
    def forged_heartbeat(self, which: str, how: str, bit: int) -> None:
        """A heartbeat that must count for nothing: the model's heartbeat clock does not move."""
        dev = self.wire[which][0]
        w = WIRE_ID[which]
        if how == "replay" and self.heard[which]:
            frames = [self.heard[which][-1]]
        elif how in ("wrong_key", "replay"):
            frames = LauncherCanCodec(Role.DEVICE, launcher_id=w, keys={7: bytes(32)}).send(
                self._status(which)
            )
        elif how == "stale":  # signed by the launcher's key, but 5 s off the gateway's clock
            frames = dev.send(self._status(which, self.h.now.wall_ns - 5 * 10**9))
        elif how == "v1":
            frames = LauncherCanCodec(Role.DEVICE, launcher_id=w, icd_version=1).send(self._status(which))
        else:
            frames = [self._forge(dev.send(self._status(which))[0], how, bit, which)]
        (out,) = self._feed(which, frames)
        assert isinstance(out, Rejected), (how, out)

    @precondition(lambda self: bool(self.h.sent))
    @rule(
        pick=st.integers(0, 10**6),
        how=st.sampled_from((*FORGERIES, "mismatched")),
        bit=st.integers(0, 8 * 48 - 1),
    )
    def forged_ack(self, pick: int, how: str, bit: int) -> None:
        """An ack of a sent cue that must never reach the core."""
        cue = self.h.sent[pick % len(self.h.sent)]
        which = cue.launcher_id
        dev = self.wire[which][0]
        a = WireAck(
            launcher_id=WIRE_ID[which],
            result=AckResult.ACK,
            reason=NackReason.NONE,
            cue_sequence=cue.sequence,
            cue_id=cue.cue_id + (1 if how == "mismatched" else 0),
            ack_sequence=0,
            launcher_time_ns=self.true_wall if how != "stale" else self.h.now.wall_ns + 5 * 10**9,
        )
        if how == "replay":  # the genuine ack went through (or was refused); its copy never passes
            genuine = dev.send(a)
            self._feed(which, genuine)
            frames = genuine
        elif how == "wrong_key":
            frames = LauncherCanCodec(Role.DEVICE, launcher_id=WIRE_ID[which], keys={7: bytes(32)}).send(a)
        elif how == "v1":
            frames = LauncherCanCodec(Role.DEVICE, launcher_id=WIRE_ID[which], icd_version=1).send(a)
        elif how in ("bit_flip", "unknown_key"):
            frames = [self._forge(dev.send(a)[0], how, bit, which)]
        else:  # stale, mismatched: signed with the right key
            frames = dev.send(a)
        acked_before = self.h.kinds().count("acked")
        (out,) = self._feed(which, frames)
        assert isinstance(out, Rejected), (how, out)
        assert self.h.kinds().count("acked") == acked_before

    @rule(which=st.sampled_from(["L1", "L2"]), up=st.booleans())
    def link(self, which: str, up: bool) -> None:  # disconnects and reconnects
        if not up and self.m_link[which]:
            self._model_hold()
        if up != self.m_link[which]:
            self.m_hb[which] = None
            self.m_hb_lost[which] = False
        self.m_link[which] = up
        self.h.apply(self.h.core.on_link(which, up, self.h.now))

    @rule(ok=st.booleans())
    def time_sync(self, ok: bool) -> None:
        if not ok and self.m_sync:
            self._model_hold()
        self.m_sync = ok
        self.h.apply(self.h.core.on_time_sync(ok, "test", self.h.now))

    @rule(sensor=st.sampled_from(["radar-1", "radar-2"]), up=st.booleans())
    def sensor(self, sensor: str, up: bool) -> None:
        self.m_sensor_up[sensor] = up
        self.h.apply(self.h.core.on_sensor_health(sensor, up, self.h.now))

    @rule(present=st.sets(st.sampled_from([1, 2])))
    def tracks(self, present: set[int]) -> None:
        self.m_present = present
        self.m_picture_mono = self.h.now.mono_ns
        ts = [
            make_track(tid, *TRACKS[tid][0], sensors=(TRACKS[tid][1],), t_ns=self.h.now.wall_ns)
            for tid in present
        ]
        self.h.tracks(*ts)

    @rule(dt=st.sampled_from([0.05, 0.1, 0.1, 0.3, 0.6, 1.2, 3.0]))
    def advance(self, dt: float) -> None:
        self.true_wall += int(dt * 1e9)
        self.h.now = self.h.now.plus(dt)
        self._model_after_time()
        self.h.apply(self.h.core.tick(self.h.now))

    @rule(jump_s=st.sampled_from([-3600.0, -4.0, 3.0, 3600.0]))
    def clock_jump(self, jump_s: float) -> None:
        d = int(jump_s * 1e9)  # the gateway's wall clock jumps; monotonic and the world do not
        self.h.now = Now(self.h.now.wall_ns + d, self.h.now.mono_ns)
        self.h.launcher_skew_ns -= d
        self.h.apply(self.h.core.tick(self.h.now))

    @rule(drop=st.booleans())
    def launcher_drops_acks(self, drop: bool) -> None:
        for fake in self.h.launchers.values():
            fake.drop_acks = drop

    @rule()
    def restart(self) -> None:
        self.h.audit.close()
        audit, hist = AuditLog.open(self.cfg.audit_path, fsync=False)
        self.h.audit = audit
        self.h.core = CueCore(self.cfg, KEYS, GW, audit, self.h.now, hist, sealers=self.h.sealers)
        assert self.h.core.authority.value == HOLD
        self.m_auth = HOLD
        self.m_hb = {"L1": None, "L2": None}
        self.m_hb_lost = {"L1": False, "L2": False}
        self.m_link = {"L1": True, "L2": True}
        self.m_sync = True
        self.m_sensor_up = {"radar-1": True, "radar-2": True}
        self.m_picture_mono = None
        self.h.apply(self.h.core.tick(self.h.now))


def _authentic(cmd: Any) -> bool:
    from gateway.cue.signing import verify

    key = KEYS.operator.get(cmd.key_id)
    return key is not None and verify(cmd, key.secret)


_FAST = settings(
    max_examples=100,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestCuePathMachine = CuePathMachine.TestCase
TestCuePathMachine.settings = _FAST


@pytest.mark.slow
@pytest.mark.timeout(1800)  # 10,000 sequences take ~6 min on a shared 2-core machine
def test_long_run_10000_sequences() -> None:
    from hypothesis.stateful import run_state_machine_as_test

    run_state_machine_as_test(
        CuePathMachine,
        settings=settings(
            max_examples=10_000,
            stateful_step_count=50,
            deadline=None,
            suppress_health_check=list(HealthCheck),
        ),
    )


# --- the asyncio shell: real clocks -----------------------------------------------------------------


async def _run_path(cfg: CueConfig, body: Any) -> None:
    tracks: Topic[track_pb2.TrackBatch] = Topic("tracks")
    path = CuePath(cfg, GW, tracks=tracks, keys=KEYS, fsync=False)
    fake = FakeLauncher("L1", {1: L1_SECRET}, time.time_ns)
    path.add_link(MemoryLink(fake, path.launcher_event))
    task = asyncio.create_task(path.run())
    try:
        await body(path, fake, tracks)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_live_heartbeat_loss_reaction_under_250_ms(tmp_path: Path) -> None:
    async def body(path: CuePath, fake: FakeLauncher, tracks: Topic[track_pb2.TrackBatch]) -> None:
        path.command("authority", authority_command("auto_cue", 1, time.time_ns()).SerializeToString())
        last_hb = 0.0
        for _ in range(40):  # heartbeats and pictures for 1 s
            t = time.time_ns()
            tracks.publish(make_batch([make_track(1, t_ns=t)], t))
            path.launcher_event(Heartbeat("L1"))
            last_hb = time.monotonic()
            await asyncio.sleep(0.025)
        assert fake.accepted
        while not fake.cancels:  # the launcher goes silent; pictures go on
            t = time.time_ns()
            tracks.publish(make_batch([make_track(1, t_ns=t)], t))
            await asyncio.sleep(0.01)
            assert time.monotonic() - last_hb < 3
        reaction = time.monotonic() - last_hb - 1.0  # heartbeat_timeout_s = 1
        assert fake.cancels[0].reason.startswith("inhibit:heartbeat_lost")
        assert reaction <= 0.25, reaction

    await _run_path(cue_config(tmp_path), body)


@pytest.mark.parametrize(
    ("command", "ok"), [(["true"], True), (["false"], False), (["/nonexistent/x"], False)]
)
async def test_time_sync_command_check(tmp_path: Path, command: list[str], ok: bool) -> None:

    cfg = cue_config(
        tmp_path, inhibit={"time_sync": {"kind": "command", "command": command, "interval_s": 0.1}}
    )

    async def body(path: CuePath, *_: Any) -> None:
        await eventually(
            lambda: path.core is not None and path.core.time_sync_detail != "not checked yet",
            what="the first time-sync check",
        )
        assert path.core is not None
        assert path.core.time_sync_ok is ok
        assert ("time_sync" in path.core.inhibits()) is not ok

    await _run_path(cfg, body)
