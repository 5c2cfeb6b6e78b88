"""Fault suite (issue 15): what the gateway loses when its surroundings fail.

    .venv/bin/python -m benchmarks.faults [--quick] [--json] [--only NAME ...]

Each experiment prints one JSON object (``--json``: only those) and the suite
ends with a table; figures and the goals are in benchmarks/faults/RESULTS.md.
Everything binds to 127.0.0.1 on free ports, and every experiment stops by
itself (a repetition count and a time limit).
"""
