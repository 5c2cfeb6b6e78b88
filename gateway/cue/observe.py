"""The cue path's operator-path counters for ``/metrics`` and its ``/healthz`` verdict
(issue 23 §7). Kept here, read by gateway/metrics.py at scrape time, so the
metrics module needs one line per hook."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric

if TYPE_CHECKING:
    from gateway.cue.path import CuePath

__all__ = ["cue_health_reasons", "cue_metrics"]


def cue_health_reasons(path: CuePath | None) -> list[str]:
    """Why ``/healthz`` must say unhealthy because of the cue path ([] when fine)."""
    return [] if path is None else path.health_reasons()


def cue_metrics(path: CuePath | None) -> Iterator[Metric]:
    """Operator commands by fate, contained faults, audit failures, health."""
    if path is None:
        return
    intake = path.intake
    yield CounterMetricFamily(
        "hilgw_cue_commands_received", "Operator commands received (any topic, any content)",
        value=intake.received,
    )  # fmt: skip
    rej = CounterMetricFamily(
        "hilgw_cue_commands_rejected",
        "Operator commands refused by the pre-checks, by reason (summarised in the audit log)",
        labels=["reason"],
    )
    for reason, n in sorted(intake.rejected.items()):
        rej.add_metric([reason], n)
    yield rej
    yield CounterMetricFamily(
        "hilgw_cue_commands_unanswered", "Rejections counted but not answered (answer rate limit)",
        value=path.unanswered,
    )  # fmt: skip
    yield CounterMetricFamily(
        "hilgw_cue_faults", "Cue-path handler faults contained (HOLD, live cues cancelled, audited)",
        value=path.faults,
    )  # fmt: skip
    core = path.core
    failures = core.audit.failures if core is not None else 0
    yield CounterMetricFamily("hilgw_cue_audit_failures", "Audit-log flushes that failed", value=failures)
    yield GaugeMetricFamily(
        "hilgw_cue_audit_ok", "0 once an audit write failed (HOLD until restart)",
        value=int(core is not None and core.audit_ok),
    )  # fmt: skip
    yield GaugeMetricFamily("hilgw_cue_running", "1 while the cue path runs", value=int(path.running))
