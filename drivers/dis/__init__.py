"""DIS (IEEE 1278.1) Entity State PDU sans-I/O codec: docs/icd/dis.md."""

from drivers.dis.entity_state import (
    ACCEPTED_VERSIONS,
    ESPDU_FIXED_LEN,
    DisCodec,
    EntityState,
    dead_reckoning_for,
    resolve_timestamp,
    timestamp_raw,
)

__all__ = [
    "ACCEPTED_VERSIONS",
    "ESPDU_FIXED_LEN",
    "DisCodec",
    "EntityState",
    "dead_reckoning_for",
    "resolve_timestamp",
    "timestamp_raw",
]
