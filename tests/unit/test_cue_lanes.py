"""One command lane per operator identity (docs/cue-path.md §12): the intake's
signer check and which operators get a lane."""

from __future__ import annotations

import time

from gateway.cue.authority import CommandVerifier
from gateway.cue.intake import Intake
from gateway.cue.keys import Key, KeyRing
from gateway.cue.operator_link import CueTopics, lane_ids
from hilgw.v1 import cue_pb2
from tests.unit.cue_support import GW, OP2_SECRET, OP_SECRET, authority_command

RING = KeyRing(
    operator={
        "op-alice": Key("op-alice", OP_SECRET, "alice"),
        "op-any": Key("op-any", OP2_SECRET),  # bound to no operator: shared topics only
        "op-bob": Key("op-bob", bytes.fromhex("44" * 32), "bob"),
        "op-odd": Key("op-odd", bytes.fromhex("55" * 32), "has/slash"),  # cannot be a topic level
    }
)
HOLD = cue_pb2.AUTHORITY_HOLD


def _verifier() -> CommandVerifier:
    return CommandVerifier(RING.operator, GW, max_age_ns=10**10, max_future_ns=10**10)


def _check(intake: Intake, cmd: cue_pb2.AuthorityCommand, lane: str | None) -> str:
    chk = intake.check("authority", cmd.SerializeToString(), _verifier(), time.time_ns(), HOLD, lane=lane)
    return chk.reason


def test_lanes_are_the_bound_operator_ids_that_can_be_a_topic_level() -> None:
    assert lane_ids(RING) == ["alice", "bob"]
    topics = CueTopics("hilgw", "field-1")
    assert topics.lane_authority("alice") == "hilgw/field-1/lane/alice/authority"
    assert topics.lane_cue("alice") == "hilgw/field-1/lane/alice/cue"


def test_a_command_on_its_own_operators_lane_passes() -> None:
    intake = Intake()
    assert _check(intake, authority_command("hold", 1, time.time_ns(), gateway=GW), "alice") == ""
    assert intake.rejected == {}


def test_a_command_signed_by_another_operator_on_a_lane_is_refused_and_counted() -> None:
    intake = Intake()
    bob = authority_command(
        "hold",
        1,
        time.time_ns(),
        key_id="op-bob",
        secret=bytes.fromhex("44" * 32),
        operator="bob",
        gateway=GW,
    )
    assert _check(intake, bob, "alice") == "wrong_lane"
    # An unbound key is no operator's: refused on every lane.
    anyone = authority_command("hold", 2, time.time_ns(), key_id="op-any", secret=OP2_SECRET, gateway=GW)
    assert _check(intake, anyone, "alice") == "wrong_lane"
    assert intake.rejected == {"wrong_lane": 2}
    summary = intake.take_summary()
    assert summary is not None
    assert summary["counts"] == {"wrong_lane": 2}
    # The same commands on the shared topics (lane None) are the verifier's business only.
    assert _check(Intake(), bob, None) == ""


def test_a_forged_signature_on_a_lane_is_refused_for_its_mac_first() -> None:
    forged = authority_command("hold", 1, time.time_ns(), secret=bytes.fromhex("99" * 32), gateway=GW)
    assert _check(Intake(), forged, "alice") == "bad_mac"


def test_the_cli_publishes_on_its_keys_operator_lane_unless_told_otherwise() -> None:
    import argparse

    from gateway.cue.cli import _lane

    ns = argparse.Namespace(shared_topic=False)
    assert _lane(ns, "auto", "alice") == "alice"
    assert _lane(ns, "auto", None) is None  # a key bound to no operator: the shared topic
    assert _lane(ns, "off", "alice") is None
    assert _lane(argparse.Namespace(shared_topic=True), "auto", "alice") is None
