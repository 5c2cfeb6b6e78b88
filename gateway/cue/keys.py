"""Keys for the cue path: operator command keys and per-launcher cue keys.

The keys file is TOML, kept apart from the gateway config (which may be
world-readable) and referenced from ``[cue] keys_file``::

    [operator.op-alice]          # key id
    secret = "9f3c...64 hex..."  # >= 16 bytes, 32 recommended (HMAC-SHA256, RFC 2104 §3)
    operator = "alice"           # optional: the only operator id this key may sign for

    [launcher.lk-north-1]
    secret = "..."

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

__all__ = ["Key", "KeyRing", "load_keys", "parse_keys"]

MIN_SECRET_BYTES = 16


@dataclass(frozen=True, slots=True)
class Key:
    key_id: str
    secret: bytes = field(repr=False)
    operator: str | None = None


@dataclass(frozen=True, slots=True)
class KeyRing:
    """Operator keys (sign commands) and launcher keys (sign cues), by key id."""

    operator: dict[str, Key] = field(default_factory=dict)
    launcher: dict[str, Key] = field(default_factory=dict)


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
    unknown = set(raw) - {"operator", "launcher"}
    if unknown:
        raise ConfigError(f"{source}: {sorted(unknown)[0]}", "unknown section (operator, launcher)")
    return KeyRing(
        _section(raw.get("operator"), "operator", source), _section(raw.get("launcher"), "launcher", source)
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
