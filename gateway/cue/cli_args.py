"""The ``authority``, ``cue`` and ``audit`` subcommands' arguments (gateway/cue/cli.py runs them).

Apart from gateway/cue/cli.py so that building the ``hilgw`` parser imports
only argparse: every command (``hilgw bench fusion`` among them, whose peak
RSS is a benchmark figure) would otherwise load aiomqtt, rich and the cue path.
"""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["add_parsers"]


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``authority``, ``cue`` and ``audit`` subcommands to the hilgw parser."""

    def common(p: argparse.ArgumentParser, signed: bool) -> None:
        p.add_argument("--config", type=Path, required=True, help="the gateway's TOML config (mqtt, [cue])")
        p.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for the gateway")
        p.add_argument("--keys", type=Path, default=None, help="keys file (default: [cue] keys_file)")
        p.add_argument(
            "--stale-after",
            type=float,
            default=6.0,
            help="a signed state older than this (s) means the gateway is offline",
        )
        if signed:
            p.add_argument("--key-id", required=True, help="operator key id in the keys file")
            p.add_argument("--operator", default=None, help="operator id (default: the key's operator)")
            p.add_argument("--reason", default="", help="free text for the audit log")
            p.add_argument("--sequence", type=int, default=None, help="default: microseconds since the epoch")
            p.add_argument(
                "--shared-topic",
                action="store_true",
                help="publish on the shared command topic, not on the key's operator lane",
            )

    auth = sub.add_parser("authority", help="show or set the engagement authority")
    asub = auth.add_subparsers(dest="action", required=True)
    common(asub.add_parser("show", help="print the current authority (retained state)"), signed=False)
    aset = asub.add_parser("set", help="send a signed authority command")
    aset.add_argument("level", help="hold | cue_on_approval | auto_cue")
    common(aset, signed=True)
    hold = asub.add_parser("hold", help="HOLD through the local switch (no broker, no key)")
    hold.add_argument("--local", action="store_true", required=True, help="use the local UNIX socket")
    hold.add_argument("--socket", type=Path, default=None, help="default: [cue] local_hold_socket")
    hold.add_argument("--config", type=Path, required=True, help="the gateway's TOML config")
    hold.add_argument("--timeout", type=float, default=2.0, help="seconds to wait for the gateway")

    cue = sub.add_parser("cue", help="list, approve or reject cues")
    csub = cue.add_subparsers(dest="action", required=True)
    common(csub.add_parser("list", help="cues pending approval, live and recently ended"), signed=False)
    for name in ("approve", "reject"):
        p = csub.add_parser(name, help=f"{name} a pending cue")
        p.add_argument("cue_id", type=int)
        common(p, signed=True)
        if name == "approve":
            p.add_argument(
                "--approval-valid-s", type=float, default=10.0, help="the approval expires after this"
            )

    audit = sub.add_parser("audit", help="audit log tools")
    aud = audit.add_subparsers(dest="action", required=True)
    v = aud.add_parser("verify", help="verify the hash chain of an audit log")
    v.add_argument("file", type=Path)
    v.add_argument("--keys", type=Path, default=None, help="gateway keys file: check the head file's MAC")
    v.add_argument(
        "--no-head", action="store_true", help="accept a log without its head file (tail unchecked)"
    )
