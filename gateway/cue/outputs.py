"""What the gateway tells operators, signed (issue 23 §3; docs/cue-path.md §3).

``CommandResult``, the retained ``AuthorityState`` and ``CueList`` carry
``gateway_key_id`` and ``signature``: Ed25519 (RFC 8032) over the same
canonical bytes as operator commands (:mod:`gateway.cue.signing`), with the
``signature`` field left out. Ed25519 rather than HMAC so that an operator
station holds only the public key and cannot forge what the gateway says.

An approval binds what the operator saw: :func:`state_digest` of the cue
(its track, the cued state and its time of validity) is published in
``CueRecord.state_digest`` and must come back in ``CueCommand.state_digest``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from google.protobuf.message import Message

from gateway.cue.keys import GatewayKey
from gateway.cue.signing import canonical_bytes
from hilgw.v1 import cue_pb2

__all__ = ["OutputSigner", "Verified", "state_digest", "verify_output"]

Output = cue_pb2.CommandResult | cue_pb2.AuthorityState | cue_pb2.CueList


def state_digest(cue: cue_pb2.EngagementCue) -> bytes:
    """SHA-256 of the cue's id, track, time of validity and cued state (canonical bytes)."""
    body = cue_pb2.EngagementCue(
        cue_id=cue.cue_id,
        launcher_id=cue.launcher_id,
        system_track_id=cue.system_track_id,
        time_of_validity_ns=cue.time_of_validity_ns,
    )
    body.state.CopyFrom(cue.state)
    return hashlib.sha256(canonical_bytes(body)).digest()


class OutputSigner:
    """Signs outputs in place with the gateway's private key."""

    def __init__(self, key: GatewayKey) -> None:
        assert key.private is not None
        self.key_id = key.key_id
        self._key = Ed25519PrivateKey.from_private_bytes(key.private)

    def sign(self, msg: Message) -> None:
        msg.gateway_key_id = self.key_id  # type: ignore[attr-defined]  # every output has both fields
        msg.signature = self._key.sign(canonical_bytes(msg, skip="signature"))  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class Verified:
    """The outcome of :func:`verify_output`: ``key_id`` set only when the signature holds."""

    ok: bool
    key_id: str
    why: str = ""


def verify_output(msg: Message, keys: dict[str, GatewayKey]) -> Verified:
    """Check a gateway output against the known gateway public keys."""
    key_id: str = getattr(msg, "gateway_key_id", "")
    sig: bytes = getattr(msg, "signature", b"")
    if not key_id or not sig:
        return Verified(False, key_id, "unsigned")
    key = keys.get(key_id)
    if key is None:
        return Verified(False, key_id, f"unknown gateway key {key_id!r}")
    try:
        Ed25519PublicKey.from_public_bytes(key.public).verify(sig, canonical_bytes(msg, skip="signature"))
    except (InvalidSignature, ValueError):
        return Verified(False, key_id, "bad signature")
    return Verified(True, key_id)
