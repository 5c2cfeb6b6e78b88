"""One line of ``hilgw doctor``'s table: a name, a result, what was found, what to do."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

__all__ = ["Check", "Result"]


class Result(Enum):
    PASS = "pass"
    WARN = "warn"
    FAIL = "FAIL"
    SKIP = "skip"


@dataclass(frozen=True, slots=True)
class Check:
    """One line of the doctor's table."""

    name: str
    result: Result
    detail: str
    fix: str = ""
