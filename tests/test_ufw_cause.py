"""ufw-blocks-10250 on hand-built snapshots: one subject per rule to fix, and every missing or partial input
gives `unknown`, never `clear` (issue 8 items 3 and 5, issue 9 item 5)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from shared.causes import ufw_blocks_10250 as ufw_cause
from shared.causes.base import run_cause
from shared.model import Status
from shared.snapshot import ClusterSnapshot, NodeProbe, Unavailable
from tests.builders import probe, snapshot

HEAD = ("Status: active\nLogging: on (low)\nDefault: {default} (incoming), allow (outgoing), disabled (routed)\n"
        "New profiles: skip\n")
TABLE = "\nTo                         Action      From\n--                         ------      ----\n"


def ufw(*rows: str, default: str = "deny") -> str:
    text = HEAD.format(default=default)
    return text + (TABLE + "".join(f"{row}\n" for row in rows) if rows else "") + "\n"


DENY_10250 = "10250/tcp                  DENY IN     Anywhere"
ALLOW_10250 = "10250/tcp                  ALLOW IN    Anywhere"
REJECT_FROM_VNET = "10250/tcp                  REJECT IN   10.224.0.0/16"
ACCEPTING = "*filter\n:INPUT ACCEPT [0:0]\nCOMMIT\n"
BEFORE_RULES_DROP = """*filter
:INPUT DROP [0:0]
:ufw-before-input - [0:0]
:ufw-user-input - [0:0]
-A INPUT -j ufw-before-input
-A ufw-before-input -i lo -j ACCEPT
-A ufw-before-input -p tcp -m tcp --dport 10250 -j DROP
-A ufw-before-input -j ufw-user-input
-A ufw-user-input -p tcp -m tcp --dport 10250 -j ACCEPT
COMMIT
"""


def probed(snap: ClusterSnapshot, per_node: dict[int, NodeProbe | Unavailable] | None = None,
           **fields: Any) -> ClusterSnapshot:
    nodes = snap.nodes
    assert isinstance(nodes, tuple)
    probes: dict[str, NodeProbe | Unavailable] = {n.name: probe(n.name, **fields) for n in nodes}
    for index, value in (per_node or {}).items():
        probes[nodes[index].name] = value
    return replace(snap, probes=probes, probes_mode="all")


def test_one_rule_on_three_nodes_is_one_subject_with_three_nodes() -> None:
    result = run_cause(ufw_cause.CAUSE, probed(snapshot(), ufw_status=ufw(DENY_10250), iptables_save=ACCEPTING))
    assert result.status is Status.DETECTED
    assert result.subjects == ("ufw: DENY IN 10250/tcp from Anywhere",)
    assert result.affected == {"ufw: DENY IN 10250/tcp from Anywhere": (
        "aks-nodepool1-1-vmss000000", "aks-nodepool1-1-vmss000001", "aks-nodepool1-1-vmss000002")}


def test_two_different_rules_are_two_subjects() -> None:
    snap = snapshot()
    nodes = snap.nodes
    assert isinstance(nodes, tuple)
    other = probe(nodes[0].name, ufw_status=ufw(REJECT_FROM_VNET), iptables_save=ACCEPTING)
    result = run_cause(ufw_cause.CAUSE, probed(snap, {0: other}, ufw_status=ufw(), iptables_save=ACCEPTING))
    assert result.status is Status.DETECTED
    assert set(result.subjects) == {"ufw: REJECT IN 10250/tcp from 10.224.0.0/16", "ufw: default incoming deny"}
    assert result.affected["ufw: REJECT IN 10250/tcp from 10.224.0.0/16"] == (nodes[0].name,)
    assert result.affected["ufw: default incoming deny"] == (nodes[1].name, nodes[2].name)


def test_subject_has_no_rule_number_or_padding() -> None:
    numbered_elsewhere = ufw("22/tcp                     ALLOW IN    Anywhere", DENY_10250)
    result = run_cause(ufw_cause.CAUSE, probed(snapshot(), ufw_status=numbered_elsewhere, iptables_save=ACCEPTING))
    assert result.subjects == ("ufw: DENY IN 10250/tcp from Anywhere",)


def test_before_rules_drop_hidden_from_ufw_status_is_detected_with_its_file() -> None:
    result = run_cause(ufw_cause.CAUSE, probed(snapshot(), ufw_status=ufw(ALLOW_10250),
                                               iptables_save=BEFORE_RULES_DROP))
    assert result.status is Status.DETECTED
    assert result.subjects == ("ufw (/etc/ufw/before.rules): -A ufw-before-input -p tcp -m tcp --dport 10250 -j DROP",)
    detail = result.evidence[0].detail
    assert "ufw-before-input" in detail
    assert "/etc/ufw/before.rules" in detail
    assert "does not show" in detail
    assert any("ufw reload" in step for step in result.remediation)


def test_status_allows_and_kernel_accepts_is_clear() -> None:
    result = run_cause(ufw_cause.CAUSE, probed(snapshot(), ufw_status=ufw(ALLOW_10250), iptables_save=ACCEPTING))
    assert result.status is Status.CLEAR


def test_inactive_ufw_is_clear_without_iptables() -> None:
    result = run_cause(ufw_cause.CAUSE, probed(snapshot(), ufw_status="Status: inactive\n", iptables_save=None))
    assert result.status is Status.CLEAR


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        ({"ufw_status": ufw(ALLOW_10250), "iptables_save": None,
          "iptables_error": "the node probe could not read the iptables filter table"}, "could not be read"),
        ({"ufw_status": ufw(ALLOW_10250), "iptables_save": "*filter\n-A INPUT -j NOPE --bogus\n"},
         "iptables"),
        ({"ufw_status": ufw(ALLOW_10250), "iptables_save": "*filter\n:FORWARD ACCEPT [0:0]\nCOMMIT\n"},
         "could not be decided"),
        ({"ufw_status": None, "ufw_error": "`ufw status verbose` output (5000 bytes) is too large"}, "too large"),
        ({"ufw_status": None, "ufw_error": "the node probe could not read `ufw status verbose`"}, "could not read"),
        ({"ufw_status": "Status: active\nthis is not ufw output\n"}, "could not read `ufw status verbose`"),
        ({"ufw_status": ""}, "could not read `ufw status verbose`"),
        ({"ufw_status": ufw("10250/tcp on eth9              ALLOW IN    Anywhere")}, "interface"),
    ],
    ids=["iptables-toolarge-or-failed", "iptables-unparseable", "iptables-truncated-no-input", "ufw-toolarge",
         "ufw-failed", "ufw-garbled", "ufw-empty", "ufw-ambiguous-interface"],
)
def test_partial_inputs_are_unknown_never_clear(fields: dict[str, Any], says: str) -> None:
    result = run_cause(ufw_cause.CAUSE, probed(snapshot(), **fields))
    assert result.status is Status.UNKNOWN, result
    assert says in (result.reason or ""), result.reason


def test_run_command_failure_on_one_node_keeps_it_unchecked_next_to_a_detection() -> None:
    failed = Unavailable("run-command failed: Conflict")
    result = run_cause(ufw_cause.CAUSE, probed(snapshot(), {1: failed}, ufw_status=ufw(DENY_10250),
                                               iptables_save=ACCEPTING))
    assert result.status is Status.DETECTED
    assert "aks-nodepool1-1-vmss000001" in result.unchecked


def test_no_node_probed_is_unknown() -> None:
    snap = replace(snapshot(), probes={"some-other-node": probe("some-other-node")}, probes_mode="sample")
    result = run_cause(ufw_cause.CAUSE, snap)
    assert result.status is Status.UNKNOWN


def test_without_crictl_a_source_dependent_ufw_rule_is_unknown_not_clear() -> None:
    one_source = ufw("10250/tcp                  DENY IN     10.224.0.6", default="allow")
    result = run_cause(ufw_cause.CAUSE, probed(snapshot(), containers=None, ufw_status=one_source,
                                               iptables_save=ACCEPTING))
    assert result.status is Status.UNKNOWN
    assert "depends on the source" in (result.reason or "")
