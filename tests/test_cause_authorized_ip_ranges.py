"""authorized-ip-ranges-exclude-egress on hand-built snapshots: every input shape, and never a false clear."""

from __future__ import annotations

import ipaddress
import shlex
from dataclasses import replace
from typing import Any

import pytest

from shared.causes import evaluate_all, run_cause
from shared.causes.authorized_ip_ranges import CAUSE, uncovered
from shared.model import CauseId, CauseResult, Status
from shared.snapshot import EgressAddress, EgressIps, Unavailable
from tests.builders import CLUSTER_ID, SUB, snapshot

PIP = f"/subscriptions/{SUB}/resourceGroups/mc/providers/Microsoft.Network/publicIPAddresses/outbound-1"
PIP2 = f"/subscriptions/{SUB}/resourceGroups/mc/providers/Microsoft.Network/publicIPAddresses/outbound-2"
PREFIX = f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Network/publicIPPrefixes/egress-prefix"
LB = f"/subscriptions/{SUB}/resourceGroups/mc/providers/Microsoft.Network/loadBalancers/kubernetes"


def egress(*items: tuple[str, str], errors: dict[str, str] | None = None) -> EgressIps:
    return EgressIps(tuple(EgressAddress(address, source, LB) for address, source in items), errors or {})


def judge(ranges: tuple[str, ...], ips: EgressIps | Unavailable | None, **overrides: Any) -> CauseResult:
    return run_cause(CAUSE, snapshot(authorized_ip_ranges=ranges, egress_ips=ips, **overrides))


def test_missing_egress_ip_is_detected_with_the_exact_update_command() -> None:
    result = judge(("73.140.245.0/24",), egress(("20.61.3.7", PIP)))
    assert result.status is Status.DETECTED
    assert "20.61.3.7" in result.summary
    assert any(e.resource == PIP and "20.61.3.7" in e.detail and "not inside" in e.detail for e in result.evidence)
    (command,) = result.remediation
    assert shlex.split(command) == ["az", "aks", "update", "-g", "rg", "-n", "aks1",
                                    "--api-server-authorized-ip-ranges", "73.140.245.0/24,20.61.3.7/32"]
    assert result.subjects == (CLUSTER_ID,)
    assert result.affected == {CLUSTER_ID: ("20.61.3.7",)}


def test_egress_ip_inside_a_range_is_clear() -> None:
    result = judge(("73.140.245.0/24", "20.61.0.0/16"), egress(("20.61.3.7", PIP)))
    assert result.status is Status.CLEAR, result
    assert any("20.61.3.7" in e.detail for e in result.evidence)


def test_only_the_missing_ip_of_several_is_named() -> None:
    result = judge(("20.61.3.7/32",), egress(("20.61.3.7", PIP), ("20.61.9.9", PIP2)))
    assert result.status is Status.DETECTED
    assert result.affected == {CLUSTER_ID: ("20.61.9.9",)}
    assert result.remediation[0].endswith("--api-server-authorized-ip-ranges 20.61.3.7/32,20.61.9.9/32")


def test_prefix_partly_outside_is_detected_and_names_the_outside_part() -> None:
    result = judge(("20.70.0.0/29",), egress(("20.70.0.0/28", PREFIX)))
    assert result.status is Status.DETECTED
    detail = next(e.detail for e in result.evidence if e.resource == PREFIX)
    assert "20.70.0.8/29 outside" in detail
    assert result.remediation[0].endswith("20.70.0.0/29,20.70.0.0/28")


def test_prefix_covered_by_two_adjacent_ranges_is_clear() -> None:
    result = judge(("20.70.0.0/29", "20.70.0.8/29"), egress(("20.70.0.0/28", PREFIX)))
    assert result.status is Status.CLEAR


@pytest.mark.parametrize(("prefix", "ranges", "outside"), [
    ("10.0.0.0/24", ("10.0.0.0/25",), ["10.0.0.128/25"]),
    ("10.0.0.0/24", ("10.0.0.0/16",), []),
    ("10.0.0.0/24", ("10.0.0.0/26", "10.0.0.192/26"), ["10.0.0.64/26", "10.0.0.128/26"]),
    ("10.0.0.5/32", ("2001:db8::/32",), ["10.0.0.5/32"]),
])
def test_uncovered_parts(prefix: str, ranges: tuple[str, ...], outside: list[str]) -> None:
    got = uncovered(ipaddress.ip_network(prefix), [ipaddress.ip_network(r) for r in ranges])
    assert [str(n) for n in got] == outside


def test_unreadable_source_alone_is_unknown_never_clear() -> None:
    result = judge(("20.61.0.0/16",), egress(("20.61.3.7", PIP),
                                            errors={PIP2: "access denied (403 AuthorizationFailed) reading public IP"}))
    assert result.status is Status.UNKNOWN
    assert "403" in (result.reason or "")
    assert result.unchecked == {PIP2: "access denied (403 AuthorizationFailed) reading public IP"}


def test_missing_ip_beside_an_unreadable_source_is_detected_and_lists_it_unchecked() -> None:
    result = judge(("73.140.245.0/24",), egress(("20.61.3.7", PIP), errors={PREFIX: "prefix 403"}))
    assert result.status is Status.DETECTED
    assert result.unchecked == {PREFIX: "prefix 403"}


@pytest.mark.parametrize(("ips", "reason"), [
    (None, "not collected"),
    (Unavailable("the egress firewall could not be read: 403"), "firewall"),
    (EgressIps(), "no egress IP"),
])
def test_missing_inputs_are_unknown(ips: EgressIps | Unavailable | None, reason: str) -> None:
    result = judge(("73.140.245.0/24",), ips)
    assert result.status is Status.UNKNOWN
    assert reason in (result.reason or "")


def test_unparseable_range_with_an_uncovered_ip_is_unknown() -> None:
    result = judge(("not-a-range", "73.140.245.0/24"), egress(("20.61.3.7", PIP)))
    assert result.status is Status.UNKNOWN
    assert "not-a-range" in (result.reason or "")


def test_unparseable_egress_address_is_unknown() -> None:
    result = judge(("0.0.0.0/0",), egress(("garbage", PIP)))
    assert result.status is Status.UNKNOWN


@pytest.mark.parametrize(("overrides", "why"), [
    ({"private": True}, "Private cluster"),
    ({"api_server_vnet_integration": True}, "VNet Integration"),
])
def test_not_applicable(overrides: dict[str, Any], why: str) -> None:
    result = judge(("73.140.245.0/24",), egress(("20.61.3.7", PIP)), **overrides)
    assert result.status is Status.NOT_APPLICABLE
    assert why in result.summary


def test_no_authorized_ranges_is_not_applicable() -> None:
    assert judge((), None).status is Status.NOT_APPLICABLE


def test_reported_last_in_every_report() -> None:
    results = evaluate_all(replace(snapshot(), authorized_ip_ranges=("1.2.3.4/32",),
                                   egress_ips=egress(("20.61.3.7", PIP))))
    assert results[-1].id is CauseId.AUTHORIZED_IP_RANGES
    assert results[-1].status is Status.DETECTED


def test_unreadable_nodes_name_their_reason() -> None:
    result = judge(("73.140.245.0/24",), None, nodes=Unavailable("ARM kept throttling (429) reading the NICs"))
    assert result.status is Status.UNKNOWN
    assert "429" in (result.reason or "")
