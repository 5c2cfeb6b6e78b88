"""The display's page limit stays under the process's open-file limit, and the
Host/Origin allow-list (gateway/web/security.py) on its own."""

from __future__ import annotations

import resource
from types import SimpleNamespace
from typing import Any

import pytest

from gateway.bus import Topic
from gateway.config import WebConfig
from gateway.web import server
from gateway.web.security import HostGuard


def _display(**web: Any) -> server.SituationDisplay:
    gw: Any = SimpleNamespace(tracks=Topic("tracks"))
    return server.SituationDisplay(gw, WebConfig(**web))


def test_max_clients_is_lowered_to_half_the_soft_nofile_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(resource, "getrlimit", lambda _: (1024, 4096))
    d = _display(max_clients=5000)
    d.bind(8080)
    assert d.max_clients == 512
    small = _display(max_clients=100)
    small.bind(8080)
    assert small.max_clients == 100  # under the limit: as configured


def test_no_limit_keeps_max_clients(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(resource, "getrlimit", lambda _: (resource.RLIM_INFINITY,) * 2)
    d = _display(max_clients=5000)
    d.bind(8080)
    assert d.max_clients == 5000


def test_host_and_origin_allow_list() -> None:
    g = HostGuard("10.0.0.5", ["display.lab", "proxy.lab:443"])
    g.bind(8080)
    for host in (
        "10.0.0.5:8080",
        "127.0.0.1:8080",
        "LOCALHOST:8080",
        "[::1]:8080",
        "display.lab:8080",
        "proxy.lab:443",
    ):
        assert g.allows_host(host), host
    for bad_host in (
        None,
        "10.0.0.5",
        "127.0.0.1:8081",
        "evil.example:8080",
        "display.lab:80",
        "proxy.lab:8080",
    ):
        assert not g.allows_host(bad_host), bad_host
    assert g.allows_origin(None)  # not a browser: the Host check holds
    assert g.allows_origin("http://127.0.0.1:8080")
    assert g.allows_origin("https://proxy.lab")  # port 443 by scheme
    assert g.allows_origin("http://[::1]:8080")
    for origin in (
        "null",
        "http://evil.example:8080",
        "http://127.0.0.1:9999",
        "file://",
        "ws://127.0.0.1:8080",
        "::",
    ):
        assert not g.allows_origin(origin), origin
