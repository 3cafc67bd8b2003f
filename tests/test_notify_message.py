"""The notification value, the generic webhook body (a DESIGN.md contract) and outbox storage."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from shared.model import CauseId, CauseResult, Evidence, Status
from shared.notify.message import (
    CauseRef,
    ClusterRef,
    Notification,
    from_json,
    notification_for,
    notification_id,
    to_generic_body,
    to_json,
    truncate,
)

CLUSTER_ID = "/subscriptions/0000-1111/resourceGroups/rg-prod/providers/Microsoft.ContainerService/managedClusters/aks1"


def make_notification(**overrides: Any) -> Notification:
    """A realistic finding; tests override only what they are about (shared by the notify tests)."""
    fields: dict[str, Any] = {
        "event": "detected",
        "finding_id": "f-7d1c",
        "cluster": ClusterRef(id=CLUSTER_ID, name="aks1", subscription_id="0000-1111"),
        "cause": CauseRef(id="nsg-blocks-10250", title="An NSG blocks TCP 10250", status="detected"),
        "subject": "/subscriptions/0000-1111/resourceGroups/MC_rg_aks1/providers/Microsoft.Network/"
                   "networkSecurityGroups/nsg1/securityRules/deny-all",
        "summary": "Rule deny-all (priority 100) denies TCP 10250 from 10.224.0.0/16 to the nodes.",
        "evidence": (
            Evidence("nsg1", "deny-all: priority 100, Deny, TCP, source * -> destination *, port *"),
            Evidence("aks-nodepool1-vmss_0", "tunnel agent cannot reach kubelet on 10.224.0.4:10250"),
        ),
        "remediation": (
            "az network nsg rule delete -g MC_rg_aks1 --nsg-name nsg1 -n deny-all",
            "az network nsg rule create -g MC_rg_aks1 --nsg-name nsg1 -n allow-10250 --priority 90 "
            "--source-address-prefixes '*' --destination-address-prefixes '*' --destination-port-ranges 10250",
        ),
        "first_seen": "2026-11-27T18:00:00Z",
        "last_seen": "2026-11-27T18:05:00Z",
    }
    fields.update(overrides)
    return Notification(**fields)


SENT_AT = datetime(2026, 11, 27, 18, 6, 7, tzinfo=UTC)


def test_generic_body_has_exactly_the_design_md_shape() -> None:
    body = to_generic_body(make_notification(), SENT_AT)

    assert list(body) == ["event", "findingId", "cluster", "cause", "subject", "summary", "evidence",
                          "remediation", "firstSeen", "lastSeen", "sentAt"]
    assert body["event"] == "detected"
    assert body["findingId"] == "f-7d1c"
    assert body["cluster"] == {"id": CLUSTER_ID, "name": "aks1", "subscriptionId": "0000-1111"}
    assert body["cause"] == {"id": "nsg-blocks-10250", "title": "An NSG blocks TCP 10250", "status": "detected"}
    assert body["evidence"][0] == {"resource": "nsg1", "detail": make_notification().evidence[0].detail}
    assert body["remediation"] == list(make_notification().remediation)
    assert (body["firstSeen"], body["lastSeen"]) == ("2026-11-27T18:00:00Z", "2026-11-27T18:05:00Z")
    assert body["sentAt"] == "2026-11-27T18:06:07Z"
    json.dumps(body)  # must be plain JSON, no tuples/enums/datetimes left


def test_sent_at_is_normalised_to_utc_and_must_be_aware() -> None:
    plus_two = timezone(timedelta(hours=2))
    body = to_generic_body(make_notification(), datetime(2026, 11, 27, 20, 6, 7, tzinfo=plus_two))
    assert body["sentAt"] == "2026-11-27T18:06:07Z"
    with pytest.raises(ValueError, match="timezone-aware"):
        to_generic_body(make_notification(), datetime(2026, 11, 27, 18, 6, 7))


def test_notification_id_is_deterministic_and_keyed_on_finding_event_last_seen() -> None:
    base = make_notification()
    assert notification_id(base) == notification_id(make_notification())
    assert len(notification_id(base)) == 64
    # What a receiver keys on changes the id ...
    assert notification_id(base) != notification_id(make_notification(event="reminder"))
    assert notification_id(base) != notification_id(make_notification(last_seen="2026-11-27T18:10:00Z"))
    assert notification_id(base) != notification_id(make_notification(finding_id="f-other"))
    # ... presentation does not (a re-worded summary is still the same transition).
    assert notification_id(base) == notification_id(make_notification(summary="reworded"))


def test_notification_id_parts_cannot_run_together() -> None:
    a = make_notification(finding_id="x-detected")
    b = make_notification(finding_id="x")
    assert notification_id(a) != notification_id(b)


@pytest.mark.parametrize("event", ["detected", "reminder", "resolved"])
def test_storage_round_trip_is_lossless(event: str) -> None:
    original = make_notification(event=event, summary="ünïcode ✓ & <tags>", evidence=[Evidence("r", "d")])
    stored = to_json(original)
    assert isinstance(stored, str)
    assert from_json(stored) == original


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("not json", "not JSON"),
        ("[]", "JSON object"),
        ('{"v": 99}', "version"),
        ("{}", "version"),
    ],
)
def test_from_json_rejects_malformed_rows(text: str, complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        from_json(text)


@pytest.mark.parametrize(
    ("mutate", "complaint"),
    [
        (lambda d: d.pop("cluster"), "cluster"),
        (lambda d: d.update(evidence=[{"resource": 1}]), "evidence"),
        (lambda d: d.update(remediation="az ..."), "remediation"),
        (lambda d: d.update(event="exploded"), "event"),
        (lambda d: d.update(lastSeen=17), "lastSeen"),
    ],
)
def test_from_json_rejects_wrong_field_types(mutate: Any, complaint: str) -> None:
    doc = json.loads(to_json(make_notification()))
    mutate(doc)
    with pytest.raises(ValueError, match=complaint):
        from_json(json.dumps(doc))


def test_invalid_notifications_are_refused() -> None:
    with pytest.raises(ValueError, match="event"):
        make_notification(event="opened")
    with pytest.raises(ValueError, match="finding_id"):
        make_notification(finding_id="")
    with pytest.raises(ValueError, match="ISO 8601"):
        make_notification(first_seen="yesterday")
    with pytest.raises(ValueError, match="UTC"):
        make_notification(last_seen="2026-11-27T18:05:00+02:00")
    with pytest.raises(ValueError, match="UTC"):
        make_notification(last_seen="2026-11-27T18:05:00")
    make_notification(last_seen="2026-11-27T18:05:00+00:00")  # explicit UTC offset is fine


def test_notification_is_frozen_and_hashable_even_from_lists() -> None:
    n = make_notification(evidence=[Evidence("a", "b")], remediation=["cmd"])
    assert n.evidence == (Evidence("a", "b"),)
    assert n.remediation == ("cmd",)
    hash(n)
    with pytest.raises(dataclasses.FrozenInstanceError):
        n.summary = "changed"  # type: ignore[misc]


def test_portal_url_points_at_the_cluster_overview() -> None:
    assert make_notification().portal_url == f"https://portal.azure.com/#@/resource{CLUSTER_ID}/overview"
    odd = make_notification(cluster=ClusterRef(id="/subscriptions/s/resourceGroups/rg (x)/p/c#1",
                                               name="c", subscription_id="s"))
    assert odd.portal_url == "https://portal.azure.com/#@/resource/subscriptions/s/resourceGroups/rg%20(x)/p/c%231/overview"


def test_notification_for_copies_a_cause_result() -> None:
    result = CauseResult(id=CauseId.UFW, status=Status.DETECTED, title="UFW blocks 10250", summary="s",
                         evidence=(Evidence("node-1", "ufw: deny 10250"),), remediation=("ufw allow 10250",))
    n = notification_for(event="detected", finding_id="f", cluster=make_notification().cluster,
                         result=result, subject="node-1", first_seen="2026-01-01T00:00:00Z",
                         last_seen="2026-01-01T00:00:00Z")
    body = to_generic_body(n, SENT_AT)
    assert body["cause"] == {"id": "ufw-blocks-10250", "title": "UFW blocks 10250", "status": "detected"}
    assert body["evidence"] == [{"resource": "node-1", "detail": "ufw: deny 10250"}]
    assert body["remediation"] == ["ufw allow 10250"]
    assert body["subject"] == "node-1"


def test_truncate_marks_the_cut() -> None:
    assert truncate("short", 10) == "short"
    assert truncate("0123456789", 10) == "0123456789"
    assert truncate("0123456789A", 10) == "012345678…"
    assert len(truncate("x" * 10_000, 150)) == 150
    with pytest.raises(ValueError, match="at least 1"):
        truncate("x", 0)
