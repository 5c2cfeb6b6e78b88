"""Scenario files shipped with the package (``builtin:NAME``); a package so the wheel carries them."""
