"""The terminal form of a report (`diagnose` without --json): what the on-call engineer reads first."""

from __future__ import annotations

from datetime import UTC, datetime

from shared.diagnose import render_table
from shared.kube.types import NO_AGENT, OK, TIMEOUT, NodeSymptom
from shared.kube.unexplained import explain_symptom
from shared.model import CauseId, CauseResult, Status
from shared.report import build_report
from shared.snapshot import Unavailable
from tests.builders import nodes, probe, snapshot

A, B, C = (n.name for n in nodes(3))


def table(**overrides: object) -> str:
    snap = snapshot(probes={n: probe(n) for n in (A, B, C)}, probes_mode="all", **overrides)
    results = [CauseResult(c, Status.CLEAR, "t", f"{c} clear") for c in CauseId]
    report = build_report(snap, results, datetime(2026, 12, 3, tzinfo=UTC), explain_symptom(snap, results))
    return render_table(report)


def test_failing_nodes_are_listed_with_the_api_servers_message_and_the_explanation() -> None:
    text = table(symptom=(NodeSymptom(A, OK, ""), NodeSymptom(B, TIMEOUT, "dial tcp 10.224.0.5:10250: i/o timeout"),
                          NodeSymptom(C, NO_AGENT, "No agent available")))
    assert f"{B}: timeout: dial tcp 10.224.0.5:10250: i/o timeout" in text
    assert f"{C}: no-agent: No agent available" in text
    assert "1 node(s) ok through the API server" in text
    assert "no documented cause explains it" in text
    assert text.splitlines()[0].endswith("PROBLEM")


def test_an_unread_symptom_says_why() -> None:
    text = table(symptom=Unavailable("RBAC forbids list nodes"))
    assert "not checked: RBAC forbids list nodes" in text
