"""Keys for the cue path: operator command keys and the gateway's signing key.

The keys file is TOML, kept apart from the gateway config (which may be
world-readable) and referenced from ``[cue] keys_file``::

    [operator.op-alice]          # key id
    secret = "9f3c...64 hex..."  # >= 16 bytes, 32 recommended (HMAC-SHA256, RFC 2104 §3)
    operator = "alice"           # optional: the only operator id this key may sign for

    [launcher.lk-north-1]        # accepted and unused: a cue carries one MAC, its wire
    secret = "..."               # tag under the launcher device's cue_keys (docs/cue-path.md §3)

    [gateway.gw-1]               # the gateway's own signing key (Ed25519, RFC 8032)
    secret = "..."               # on the gateway: the 32-byte private seed
    # public = "..."             # on operator stations: the 32-byte public key only

The gateway signs what operators read (CommandResult, the retained authority
and cue list, the audit head) with its ``[gateway.*]`` key; the CLI verifies
them against the public key. An asymmetric key, so that a station able to
verify cannot forge (``hilgw keys gateway-public`` prints the public half).

The file must not be readable by group or others (mode 0600): a secret anyone
on the machine can read authenticates nothing. Load fails with a one-line
:class:`~hilgw.errors.ConfigError` otherwise.
"""

from __future__ import annotations

import os
import stat
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from hilgw.errors import ConfigError

__all__ = ["GatewayKey", "Key", "KeyRing", "load_keys", "parse_keys"]

MIN_SECRET_BYTES = 16


@dataclass(frozen=True, slots=True)
class Key:
    key_id: str
    secret: bytes = field(repr=False)
    operator: str | None = None


@dataclass(frozen=True, slots=True)
class GatewayKey:
    """The gateway's Ed25519 key: ``private`` (32-byte seed) only where the gateway runs."""

    key_id: str
    public: bytes
    private: bytes | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class KeyRing:
    """Operator keys (sign commands), gateway keys (sign outputs); ``launcher``: parsed from
    older keys files and unused (cues are signed on the wire, docs/cue-path.md §3)."""

    operator: dict[str, Key] = field(default_factory=dict)
    launcher: dict[str, Key] = field(default_factory=dict)
    gateway: dict[str, GatewayKey] = field(default_factory=dict)

    def signing_key(self) -> GatewayKey | None:
        """The one gateway key with a private half (None if there is none)."""
        own = [k for k in self.gateway.values() if k.private is not None]
        return own[0] if len(own) == 1 else None


def _gateway_section(raw: object, source: str) -> dict[str, GatewayKey]:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: gateway", "must be a table of key ids")
    out: dict[str, GatewayKey] = {}
    for key_id, body in raw.items():
        where = f"{source}: gateway.{key_id}"
        if not isinstance(body, dict) or not (set(body) & {"secret", "public"}):
            raise ConfigError(where, 'needs secret = "<64 hex>" (gateway) or public = "<64 hex>" (stations)')
        unknown = set(body) - {"secret", "public"}
        if unknown:
            raise ConfigError(f"{where}.{sorted(unknown)[0]}", "unknown key")
        vals: dict[str, bytes] = {}
        for name in ("secret", "public"):
            if name in body:
                try:
                    vals[name] = bytes.fromhex(str(body[name]))
                except ValueError:
                    raise ConfigError(f"{where}.{name}", "not a hex string") from None
                if len(vals[name]) != 32:
                    raise ConfigError(f"{where}.{name}", f"{len(vals[name])} bytes, need 32 (Ed25519)")
        private = vals.get("secret")
        public = vals.get("public")
        if private is not None:
            derived = (
                Ed25519PrivateKey.from_private_bytes(private)
                .public_key()
                .public_bytes(Encoding.Raw, PublicFormat.Raw)
            )
            if public is not None and public != derived:
                raise ConfigError(f"{where}.public", "does not belong to the secret")
            public = derived
        assert public is not None
        out[str(key_id)] = GatewayKey(str(key_id), public, private)
    return out


def _section(raw: object, kind: str, source: str) -> dict[str, Key]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: {kind}", "must be a table of key ids")
    out: dict[str, Key] = {}
    for key_id, body in raw.items():
        where = f"{source}: {kind}.{key_id}"
        if not isinstance(body, dict) or not isinstance(body.get("secret"), str):
            raise ConfigError(where, 'needs secret = "<hex>"')
        unknown = set(body) - {"secret", "operator"}
        if unknown:
            raise ConfigError(f"{where}.{sorted(unknown)[0]}", "unknown key")
        try:
            secret = bytes.fromhex(body["secret"])
        except ValueError:
            raise ConfigError(f"{where}.secret", "not a hex string") from None
        if len(secret) < MIN_SECRET_BYTES:
            raise ConfigError(
                f"{where}.secret", f"too short: {len(secret)} bytes, need >= {MIN_SECRET_BYTES}"
            )
        operator = body.get("operator")
        if operator is not None and not isinstance(operator, str):
            raise ConfigError(f"{where}.operator", "must be a string")
        out[str(key_id)] = Key(str(key_id), secret, operator)
    return out


def parse_keys(raw: dict[str, object], source: str = "keys") -> KeyRing:
    """Validate a parsed keys document."""
    unknown = set(raw) - {"operator", "launcher", "gateway"}
    if unknown:
        raise ConfigError(f"{source}: {sorted(unknown)[0]}", "unknown section (operator, launcher, gateway)")
    return KeyRing(
        _section(raw.get("operator"), "operator", source),
        _section(raw.get("launcher"), "launcher", source),
        _gateway_section(raw.get("gateway"), source),
    )


def load_keys(path: str | Path) -> KeyRing:
    """Load the keys file; refuse one that group or others can read or write."""
    p = Path(path)
    try:
        st = p.stat()
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(str(p), f"cannot read keys file: {exc.strerror}") from None
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o077:
        raise ConfigError(
            str(p), f"keys file is accessible by group/others (mode {mode:04o}); run chmod 600 {p}"
        )
    if hasattr(os, "geteuid") and st.st_uid != os.geteuid():
        raise ConfigError(str(p), f"keys file is owned by uid {st.st_uid}, not by this user ({os.geteuid()})")
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(p), f"not valid TOML: {exc}") from None
    return parse_keys(raw, str(p))
