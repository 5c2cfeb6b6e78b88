"""The ``hilgw`` command: run, emulate, score, bench, doctor.

Errors a user can fix (a bad config, a port that will not open) end with one
line on stderr and a non-zero exit code, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path

from hilgw.errors import ConfigError, HilgwError, RecordingError

EXIT_CONFIG = 2
EXIT_RUNTIME = 1


def _run(ns: argparse.Namespace) -> int:
    from gateway.config import default_config, load_config

    config = load_config(ns.config) if ns.config else default_config()
    if config.cue is not None and config.cue.enabled:
        # The keys file now, not when the cue path starts (exit 2, one line).
        from gateway.cue.keyfile import check_key_file
        from gateway.cue.keys import load_keys

        check_key_file(config.cue.keys_file, allow_symlink=config.cue.keys_file_symlink)
        load_keys(config.cue.keys_file)
    logging.basicConfig(
        level=ns.log_level or config.log_level,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    from gateway.console import run_gateway

    return asyncio.run(run_gateway(config, duration_s=ns.duration, live=ns.live))


def _doctor(ns: argparse.Namespace) -> int:
    from gateway.config import load_config
    from gateway.doctor import main as doctor_main

    return doctor_main(load_config(ns.config), str(ns.config))


def _replay(ns: argparse.Namespace) -> int:
    if ns.recover:
        return _recover(ns.files)
    from gateway.replay import replay_command
    from gateway.replay_pcap import capture_command, is_capture

    speed = None if ns.max_speed else ns.speed
    progress = sys.stderr.isatty() if ns.progress is None else ns.progress
    captures = [is_capture(f) for f in ns.files]
    if any(captures):
        # pcap/pcapng (issue 22): the config says which device each address feeds.
        if not all(captures):
            print(
                "hilgw replay: give either .mcap recordings or pcap/pcapng captures, not both",
                file=sys.stderr,
            )
            return 2
        if ns.config is None:
            print("hilgw replay: a capture needs --config (which device listens where)", file=sys.stderr)
            return 2
        return capture_command(ns.files, ns.config, speed)
    return replay_command(ns.files, speed=speed, check=ns.check, show_progress=progress)


def _recover(files: list[Path]) -> int:
    """``hilgw replay --recover``: a complete copy of each part's intact records."""
    from gateway.recording_check import check_part, recover_part, recovered_path

    for path in files:
        found = check_part(path)
        if found.problem() is None:
            print(f"{path}: sound, nothing to recover")
            continue
        found = recover_part(path)
        print(
            f"{path}: wrote {recovered_path(path)} with {found.messages} messages "
            f"(stopped at byte {found.offset}: {found.error or 'no footer'})"
        )
    return 0


def _emulate(ns: argparse.Namespace, rest: list[str]) -> int:
    """``hilgw emulate ...`` is ``python -m sim_devices.emulate ...``: this
    process becomes the emulator (exec), so its signals, output and exit code
    are the emulator's own and the gateway package never imports sim_devices."""
    root = str(Path(__file__).resolve().parent.parent)  # a source checkout, as an install
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, "-m", "sim_devices.emulate", *rest])


def _score(ns: argparse.Namespace, rest: list[str]) -> int:
    from gateway.score import main as score_main

    return score_main(rest)


def _bench(ns: argparse.Namespace, rest: list[str]) -> int:
    if ns.what == "fusion":
        from gateway.bench_fusion import main as bench_main

        return bench_main(rest)
    raise ConfigError("bench", f"unknown benchmark {ns.what!r}")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="hilgw", description="hardware-in-the-loop sensor-to-shooter gateway")
    sub = ap.add_subparsers(dest="cmd", required=True)

    run = sub.add_parser("run", help="run the gateway (no --config: the bundled emulated demo)")
    run.add_argument("--config", type=Path, help="TOML config file (docs/config.md)")
    run.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    run.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"], default=None)
    live = run.add_mutually_exclusive_group()
    live.add_argument("--live", dest="live", action="store_true", default=None, help="live terminal summary")
    live.add_argument("--no-live", dest="live", action="store_false", help="periodic log lines instead")

    doctor = sub.add_parser("doctor", help="check a config's devices, broker and clock without running")
    doctor.add_argument("--config", type=Path, required=True, help="TOML config file (docs/config.md)")

    replay = sub.add_parser("replay", help="re-run a recording through codecs and fusion (docs/recording.md)")
    replay.add_argument(
        "files",
        type=Path,
        nargs="+",
        metavar="FILE",
        help="the .mcap part(s) of one run, or pcap/pcapng captures",
    )
    replay.add_argument(
        "--config", type=Path, help="captures: the gateway config mapping addresses to devices"
    )
    pace = replay.add_mutually_exclusive_group()
    pace.add_argument("--speed", type=float, default=1.0, help="times real time (default 1.0)")
    pace.add_argument("--max-speed", action="store_true", help="as fast as possible")
    replay.add_argument("--check", action="store_true", help="exit 1 unless every step matches the recording")
    replay.add_argument(
        "--recover",
        action="store_true",
        help="copy the intact records of a damaged or unclosed part to <name>.recovered.mcap; no replay",
    )
    bar = replay.add_mutually_exclusive_group()
    bar.add_argument("--progress", dest="progress", action="store_true", default=None, help="progress bar")
    bar.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")

    sub.add_parser("emulate", help="run device emulators (see `hilgw emulate --help`)", add_help=False)
    sub.add_parser("score", help="score tracks against truth (see `hilgw score --help`)", add_help=False)
    bench = sub.add_parser("bench", help="benchmarks (see `hilgw bench fusion --help`)")
    bench.add_argument("what", choices=["fusion"])
    from gateway.cue.cli_args import add_parsers as add_cue_parsers

    add_cue_parsers(sub)  # authority show|set, cue list|approve|reject, audit verify
    return ap


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = build_parser()
    # `emulate` and `bench X` hand the rest of the line to their own parsers.
    if argv and argv[0] in ("emulate", "score"):
        ns, rest = argparse.Namespace(cmd=argv[0]), argv[1:]
    elif len(argv) >= 2 and argv[0] == "bench":
        ns, rest = ap.parse_args(argv[:2]), argv[2:]
    else:
        ns, rest = ap.parse_args(argv), []
    try:
        if ns.cmd == "run":
            return _run(ns)
        if ns.cmd == "emulate":
            return _emulate(ns, rest)
        if ns.cmd == "score":
            return _score(ns, rest)
        if ns.cmd == "bench":
            return _bench(ns, rest)
        if ns.cmd == "replay":
            return _replay(ns)
        if ns.cmd == "doctor":
            return _doctor(ns)
        if ns.cmd in ("authority", "cue", "audit"):
            from gateway.cue.cli import main as cue_main

            return cue_main(ns)
    except ConfigError as exc:
        print(f"hilgw: config error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except RecordingError as exc:
        print(f"hilgw: recording: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except HilgwError as exc:
        print(f"hilgw: {exc}", file=sys.stderr)
        return EXIT_RUNTIME
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
