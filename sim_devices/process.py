"""The child-process runner now lives in :mod:`hilgw.process` (shared with the gateway)."""

from hilgw.process import READY_TIMEOUT_S, EmulatorProcess, start_emulator

__all__ = ["READY_TIMEOUT_S", "EmulatorProcess", "start_emulator"]
