"""Key specs of a device block resolved to secrets: ``key id -> "hex:.." | "env:VAR" | "file:path"``.

One reader for both ends of a launcher link: the gateway's launcher driver
(``[devices] cue_keys``, docs/config.md) and the launcher emulator (its
scenario's ``keys``), so a key spec means the same on both. The gateway's own
signing key ring is a file of its own (gateway/cue/keys.py).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from hilgw.errors import ConfigError

__all__ = ["resolve_keys"]


def resolve_keys(specs: Mapping[int, str], where: str = "cue_keys") -> dict[int, bytes]:
    """Resolve ``key id -> "hex:.." | "env:VAR" | "file:path"`` (hex text) to secrets."""
    keys: dict[int, bytes] = {}
    for key_id, spec in specs.items():
        kind, _, value = spec.partition(":")
        try:
            if kind == "hex":
                text = value
            elif kind == "env":
                text = os.environ[value]
            elif kind == "file":
                text = Path(value).read_text(encoding="ascii")
            else:
                raise ValueError(f"unknown key source {kind!r} (hex:, env: or file:)")
            secret = bytes.fromhex(text.strip())
        except (KeyError, OSError, ValueError) as exc:
            raise ConfigError(f"{where}[{key_id}]", f"cannot load key: {exc!r}") from None
        if len(secret) < 16:
            raise ConfigError(f"{where}[{key_id}]", f"key of {len(secret)} bytes; at least 16 are needed")
        keys[key_id] = secret
    return keys
