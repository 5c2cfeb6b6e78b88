"""Config-time loaders of the described codecs (gateway/protocols.py names them).

Each validates a ``codec`` table and compiles it against its DBC or layout;
every failure is a ValueError whose message begins with the dotted key below
``codec`` (``fields.range.signal: ...``), one line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from drivers.described.binary_codec import CompiledLayout, compile_layout
from drivers.described.dbc_codec import CompiledDbc, compile_dbc
from drivers.described.description import BinaryRadarDescription, CanDbcRadarDescription
from hilgw.tomlconfig import one_line

__all__ = ["load_binary_radar", "load_dbc_radar"]


_M = TypeVar("_M", bound=BaseModel)


def _validate(model: type[_M], raw: Any) -> _M:
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        err = one_line(exc, raw, "")
        key = err.key.removeprefix(": ")
        raise ValueError(f"{key}: {err.reason}" if key else err.reason) from None


def load_dbc_radar(raw: Any, base_dir: Path | None) -> CompiledDbc:
    """A ``can_dbc_radar`` codec block, checked against its DBC file."""
    return compile_dbc(_validate(CanDbcRadarDescription, raw), base_dir)


def load_binary_radar(raw: Any, base_dir: Path | None) -> CompiledLayout:
    """A ``binary_radar`` codec block, compiled to its numpy layout."""
    return compile_layout(_validate(BinaryRadarDescription, raw))
