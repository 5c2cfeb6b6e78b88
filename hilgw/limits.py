"""Limits every config loader applies, apart from the loaders themselves.

Here rather than in :mod:`hilgw.tomlconfig` so that code which checks values
without pydantic (the fusion engine's own parameters, validated again in the
fusion worker process) does not import pydantic for one number: a worker
process that imports only what fusion needs is ~8 MB smaller (issue 18).
"""

from __future__ import annotations

__all__ = ["MAX_ABS_FLOAT"]

#: Largest magnitude of any float config value. Durations become nanoseconds
#: in int64 fields (1e9 s * 1e9 = 1e18 < 2**63), so a larger value would
#: overflow a protobuf field or a deadline far from where it was written;
#: no quantity in a config (metres, seconds, hertz) needs more.
MAX_ABS_FLOAT = 1e9
