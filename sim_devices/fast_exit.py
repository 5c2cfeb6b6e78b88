"""Run an emulator's ``main()``, then exit without interpreter teardown.

``python -m sim_devices.fast_exit MODULE ARGS`` runs ``MODULE.main(ARGS)``.

Why: tearing down an interpreter that imported libasterix's generated tables
(``asterix.generated``, imported by the frigate emulator) takes about a second
of deallocation, and a bench of several such children then takes longer to
stop than ``hilgw run`` promises (2 s, tests/e2e/test_cli_run.py). The
emulators have already closed their transports and flushed their ``stopped``
line when ``main()`` returns, so nothing is lost by ``os._exit`` after a final
flush of stdout/stderr.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys


def run(module: str, argv: list[str]) -> int:
    """``module.main(argv)``; its exit code."""
    main = importlib.import_module(module).main
    code = main(argv)
    return int(code) if isinstance(code, int) else 0


if __name__ == "__main__":
    if len(sys.argv) < 2:
        print("usage: python -m sim_devices.fast_exit MODULE [ARGS...]", file=sys.stderr)
        sys.exit(2)
    rc = run(sys.argv[1], sys.argv[2:])
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(rc)
