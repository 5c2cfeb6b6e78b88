"""The floors of the house hold (docs/architecture.md, "Floors"): read from the source with ast.

hilgw/ (shared primitives) <- drivers/ (codecs) <- gateway/; sim_devices/ beside
the gateway, using only its transports and its config reader. No protocol
package imports another, no transport imports a codec, no import cycle (type
level included), no module over 600 lines. ``python -m tests.import_layers``
prints the figures.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.import_layers import cycles, not_allowed, oversized, read_graph

ROOT = Path(__file__).resolve().parents[2]

#: Cycles still open, each with its owner; none may be added (none today:
#: the fusion engine's helpers see it through gateway.fusion.view.EngineView).
KNOWN_CYCLES: list[list[str]] = []
#: Longer than the rule, each with its owner (none today).
KNOWN_LONG: set[str] = set()


@pytest.fixture(scope="module")
def graph():  # type: ignore[no-untyped-def]
    return read_graph(ROOT)


def test_no_import_breaks_the_floors(graph) -> None:  # type: ignore[no-untyped-def]
    assert not_allowed(graph) == []


def test_no_import_cycle_beyond_the_known_ones(graph) -> None:  # type: ignore[no-untyped-def]
    new = [c for c in cycles(graph) if c not in KNOWN_CYCLES]
    assert new == []


def test_no_module_grows_past_600_lines(graph) -> None:  # type: ignore[no-untyped-def]
    long = {str(Path(p).relative_to(ROOT)) for p, _ in oversized(graph)}
    assert long <= KNOWN_LONG


def _tree(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def test_the_reader_sees_arrows_back_up_sideways_and_type_level_cycles(tmp_path: Path) -> None:
    _tree(
        tmp_path,
        {
            "hilgw/__init__.py": "",
            "hilgw/geo.py": "from gateway import supervisor\n",  # back up
            "drivers/__init__.py": "",
            "drivers/launcher/__init__.py": "",
            "drivers/launcher/codec.py": "from drivers.can_radar import frame\n",  # sideways
            "drivers/can_radar/__init__.py": "",
            "drivers/can_radar/frame.py": "",
            "gateway/__init__.py": "",
            "gateway/supervisor.py": "from gateway.metrics import Collector\n",
            "gateway/metrics.py": (
                "from typing import TYPE_CHECKING\n"
                "if TYPE_CHECKING:\n"
                "    from gateway.supervisor import Gateway\n"
            ),
            "gateway/transports/__init__.py": "",
            "gateway/transports/can.py": "def f():\n    from drivers.can_radar.frame import CanFrame\n",
            "sim_devices/__init__.py": "",
            "sim_devices/emu.py": "from gateway.transports import can\nfrom gateway import supervisor\n",
        },
    )
    g = read_graph(tmp_path)
    assert [(s, d) for s, d, _ in not_allowed(g)] == [
        ("drivers.launcher.codec", "drivers.can_radar.frame"),
        ("gateway.transports.can", "drivers.can_radar.frame"),
        ("hilgw.geo", "gateway.supervisor"),
        ("sim_devices.emu", "gateway.supervisor"),
    ]
    assert cycles(g) == [["gateway.metrics", "gateway.supervisor"]]
    assert oversized(g, limit=2) == [(str(tmp_path / "gateway/metrics.py"), 3)]
