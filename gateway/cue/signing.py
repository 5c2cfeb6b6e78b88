"""Canonical bytes and HMAC-SHA256 for the operator's signed commands
(``AuthorityCommand``, ``CueCommand``); the same canonical bytes carry the
gateway's Ed25519 output signatures (:mod:`gateway.cue.outputs`).

Cues and cancels are *not* signed here: a cue carries one MAC, its
launcher-wire tag (:mod:`gateway.cue.seal`, docs/cue-path.md §3).

The MAC is never computed over the protobuf encoding: protobuf does not
promise a stable byte layout (field order, unknown fields, map order). The
canonical bytes are defined here and in docs/cue-path.md §3, so any
implementation (a launcher in another language) can reproduce them:

    canonical(msg) = full message name (UTF-8) || 0x00 || fields

with the fields in ascending field number, the ``mac`` field left out and
every other field written whether set or not:

* integers and enums: 8 bytes, big-endian, two's complement for signed types;
* bool: 1 byte (0/1);
* double: 8 bytes IEEE 754 binary64, big-endian;
* string/bytes: u32 big-endian length, then the UTF-8 / raw bytes;
* message: u32 big-endian length, then its canonical fields (no name);
* repeated: u32 big-endian count, then each element as above.

MAC = HMAC-SHA256(secret, canonical(msg)) (RFC 2104, FIPS 198-1), compared
in constant time (:func:`hmac.compare_digest`).
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

__all__ = ["canonical_bytes", "compute_mac", "sign", "verify"]

_U32 = struct.Struct(">I")
_I64 = struct.Struct(">q")
_U64 = struct.Struct(">Q")
_F64 = struct.Struct(">d")

_SIGNED = {
    FieldDescriptor.TYPE_INT32, FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_SINT32,
    FieldDescriptor.TYPE_SINT64, FieldDescriptor.TYPE_SFIXED32, FieldDescriptor.TYPE_SFIXED64,
    FieldDescriptor.TYPE_ENUM,
}  # fmt: skip
_UNSIGNED = {
    FieldDescriptor.TYPE_UINT32, FieldDescriptor.TYPE_UINT64,
    FieldDescriptor.TYPE_FIXED32, FieldDescriptor.TYPE_FIXED64,
}  # fmt: skip


def _scalar(fd: Any, v: Any, out: bytearray) -> None:
    t = fd.type
    if t in _SIGNED:
        out += _I64.pack(int(v))
    elif t in _UNSIGNED:
        out += _U64.pack(int(v))
    elif t == FieldDescriptor.TYPE_BOOL:
        out.append(1 if v else 0)
    elif t in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        out += _F64.pack(float(v))
    elif t == FieldDescriptor.TYPE_STRING:
        b = str(v).encode("utf-8")
        out += _U32.pack(len(b)) + b
    elif t == FieldDescriptor.TYPE_BYTES:
        out += _U32.pack(len(v)) + bytes(v)
    elif t == FieldDescriptor.TYPE_MESSAGE:
        inner = _fields(v)
        out += _U32.pack(len(inner)) + inner
    else:  # pragma: no cover - no such field in proto/hilgw/v1/cue.proto
        raise TypeError(f"canonical encoding has no rule for field type {t} ({fd.full_name})")


def _fields(msg: Message, skip: str | None = None) -> bytes:
    out = bytearray()
    fields: list[Any] = list(msg.DESCRIPTOR.fields)  # protobuf's upb and Python descriptor types differ
    for fd in sorted(fields, key=lambda f: f.number):
        if fd.name == skip:
            continue
        v = getattr(msg, fd.name)
        if fd.is_repeated:
            out += _U32.pack(len(v))
            for item in v:
                _scalar(fd, item, out)
        else:
            _scalar(fd, v, out)
    return bytes(out)


def canonical_bytes(msg: Message, skip: str = "mac") -> bytes:
    """The bytes a signed message's MAC covers (every field but ``skip``: ``mac``, or
    ``signature`` for the gateway's Ed25519-signed outputs)."""
    return msg.DESCRIPTOR.full_name.encode("ascii") + b"\x00" + _fields(msg, skip=skip)


def compute_mac(msg: Message, secret: bytes) -> bytes:
    return hmac.new(secret, canonical_bytes(msg), hashlib.sha256).digest()


def sign(msg: Message, key_id: str, secret: bytes) -> None:
    """Set ``key_id`` and ``mac`` of a signed message in place."""
    msg.key_id = key_id  # type: ignore[attr-defined]  # every signed message has key_id and mac
    msg.mac = compute_mac(msg, secret)  # type: ignore[attr-defined]


def verify(msg: Message, secret: bytes) -> bool:
    """True when ``msg.mac`` is the MAC of ``msg`` under ``secret`` (constant time)."""
    mac: bytes = msg.mac  # type: ignore[attr-defined]
    return len(mac) == hashlib.sha256().digest_size and hmac.compare_digest(mac, compute_mac(msg, secret))
