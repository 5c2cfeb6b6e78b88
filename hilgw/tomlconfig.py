"""Reading TOML files and turning pydantic errors into one-line ConfigErrors.

Shared by the gateway config (gateway/config.py) and the scenario files
(sim_devices/scenario.py), so both name a bad key the same way::

    lab.toml: devices[radar-fwd].transport.baudrate: must be one of ... (got 12345)
"""

from __future__ import annotations

import math
import reprlib
import tomllib
from collections.abc import Collection
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from hilgw.errors import ConfigError
from hilgw.limits import MAX_ABS_FLOAT  # re-exported: every loader imports it from here

__all__ = ["MAX_ABS_FLOAT", "StrictModel", "dotted_key", "one_line", "parse_toml", "read_toml"]


class StrictModel(BaseModel):
    """Base of every config and scenario model: unknown keys refused, frozen,
    and no float may be ``inf``/``nan`` (TOML spells them ``inf``/``nan``, and
    ``1e309`` overflows to ``inf``) or larger in magnitude than
    :data:`MAX_ABS_FLOAT`. One place, so every numeric key gets it."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @field_validator("*", mode="after")
    @classmethod
    def _bounded_floats(cls, value: Any) -> Any:
        # allow_inf_nan covers plain float fields; this also reaches floats in
        # tuples/lists (waypoints, matrices) and catches huge finite values.
        for v in value if isinstance(value, list | tuple) else (value,):
            if isinstance(v, float) and (not math.isfinite(v) or abs(v) > MAX_ABS_FLOAT):
                raise ValueError(f"must be a finite number of magnitude <= {MAX_ABS_FLOAT:g}")
        return value


def read_toml(path: str | Path) -> dict[str, Any]:
    """The parsed document; ConfigError naming the file when unreadable or not TOML."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise ConfigError(str(p), f"cannot read: {exc.strerror}") from None
    return parse_toml(data, str(p))


def parse_toml(data: bytes, source: str) -> dict[str, Any]:
    """Parse TOML bytes; every failure is a one-line ConfigError naming ``source``."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(source, f"not UTF-8 text (byte offset {exc.start})") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(source, f"not valid TOML: {exc}") from None
    except RecursionError:
        # tomllib recurses once per nesting level of arrays/inline tables.
        raise ConfigError(source, "not valid TOML: nested too deeply") from None


def dotted_key(loc: tuple[int | str, ...], raw: Any, tags: Collection[str] = ()) -> str:
    """Dotted key of an error location; list items are named by their ``id``.

    ``tags`` are discriminator values pydantic inserts as location parts (the
    ``kind`` of a tagged union); they are skipped where the document has no
    such key.
    """
    parts: list[str] = []
    node: Any = raw
    for item in loc:
        if isinstance(item, int):
            ok = isinstance(node, list) and item < len(node)
            ident = node[item].get("id") if ok and isinstance(node[item], dict) else None
            label = ident if isinstance(ident, str) else str(item)
            parts[-1:] = [f"{parts[-1] if parts else ''}[{label}]"]
            node = node[item] if ok else None
        else:
            if isinstance(node, dict) and item not in node and item in tags:
                continue
            parts.append(item)
            node = node.get(item) if isinstance(node, dict) else None
    return ".".join(parts)


def one_line(exc: ValidationError, raw: Any, source: str, tags: Collection[str] = ()) -> ConfigError:
    """The first error of ``exc`` as ``source: dotted.key: reason (got value)``."""
    err = exc.errors()[0]
    key = dotted_key(tuple(err["loc"]), raw, tags)
    msg = str(err["msg"]).removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        msg = "unknown key"
    elif "input" in err and err["type"] != "missing" and not isinstance(err["input"], dict | list):
        msg = f"{msg} (got {reprlib.repr(err['input'])})"  # shortened: one line
    more = len(exc.errors()) - 1
    if more:
        msg += f" (and {more} more error{'s' if more > 1 else ''})"
    return ConfigError(f"{source}: {key}" if key else source, msg)
