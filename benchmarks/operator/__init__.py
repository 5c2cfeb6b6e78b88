"""Operator-path benchmarks (issue 23): HOLD under a flood, fuzzed commands, audit flush faults."""
