"""The engagement-cue path (issue 5, docs/cue-path.md).

The gateway forwards cues; it never decides to fire and computes nothing
about a weapon. Pure core (:mod:`gateway.cue.core`: authority, command
verification, rules, cue bookkeeping, inhibits; time passed in) and a thin
asyncio shell (:mod:`gateway.cue.path`). Submodules are imported directly;
this package imports nothing so that :mod:`gateway.config` can use
:mod:`gateway.sections.cue` without a cycle.
"""
