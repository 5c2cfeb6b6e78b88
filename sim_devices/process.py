"""The child-process runner now lives in :mod:`hilgw.process` (shared with the gateway)."""

from hilgw.process import EmulatorProcess, start_emulator

__all__ = ["EmulatorProcess", "start_emulator"]
