"""iptables-blocks-10250 on hand-built snapshots: refusals in UFW's chains that `ufw status` does not explain
are reported here with chain, rule and file (issue 8 item 3); one subject per rule (issue 9 item 5); every
missing or partial input gives `unknown` (issue 8 item 5)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from shared.causes import iptables_blocks_10250 as iptables_cause
from shared.causes.base import run_cause
from shared.model import Status
from shared.snapshot import ClusterSnapshot, NodeProbe, Unavailable
from tests.builders import probe, snapshot
from tests.test_ufw_cause import ALLOW_10250, BEFORE_RULES_DROP, DENY_10250, ufw


def chains(*rules: str, policy: str = "ACCEPT") -> str:
    declared = sorted({r.split()[1] for r in rules if r.split()[1] != "INPUT"}
                      | {r.split()[r.split().index("-j") + 1] for r in rules
                         if r.split()[r.split().index("-j") + 1].startswith("ufw")})
    return ("*filter\n" + f":INPUT {policy} [0:0]\n" + "".join(f":{c} - [0:0]\n" for c in declared)
            + "".join(f"{r}\n" for r in rules) + "COMMIT\n")


USER_DROP = chains("-A INPUT -j ufw-before-input", "-A ufw-before-input -j ufw-user-input",
                   "-A ufw-user-input -p tcp -m tcp --dport 10250 -j DROP", policy="DROP")
AFTER_DROP = chains("-A INPUT -j ufw-after-input", "-A ufw-after-input -p tcp -m tcp --dport 10250 -j DROP")
HAND_ADDED = chains("-A INPUT -j ufw-custom", "-A ufw-custom -p tcp -m tcp --dport 10250 -j REJECT")
POLICY_DROP = chains("-A INPUT -j ufw-before-input", "-A ufw-before-input -j ufw-user-input",
                     "-A ufw-user-input -p tcp -m tcp --dport 22 -j ACCEPT", policy="DROP")
PLAIN_DROP = chains("-A INPUT -p tcp -m tcp --dport 10250 -j DROP")
OTHER_DROP = chains("-A INPUT -s 10.224.0.0/16 -p tcp -m tcp --dport 10250 -j REJECT")


def probed(snap: ClusterSnapshot, per_node: dict[int, NodeProbe | Unavailable] | None = None,
           **fields: Any) -> ClusterSnapshot:
    nodes = snap.nodes
    assert isinstance(nodes, tuple)
    probes: dict[str, NodeProbe | Unavailable] = {n.name: probe(n.name, **fields) for n in nodes}
    for index, value in (per_node or {}).items():
        probes[nodes[index].name] = value
    return replace(snap, probes=probes, probes_mode="all")


def test_before_rules_drop_not_in_ufw_status_is_detected_naming_chain_rule_and_file() -> None:
    result = run_cause(iptables_cause.CAUSE, probed(snapshot(), ufw_status=ufw(ALLOW_10250),
                                                    iptables_save=BEFORE_RULES_DROP))
    assert result.status is Status.DETECTED
    detail = result.evidence[0].detail
    assert "ufw-before-input" in detail
    assert "-A ufw-before-input -p tcp -m tcp --dport 10250 -j DROP" in detail
    assert "/etc/ufw/before.rules" in detail
    assert result.subjects == ("iptables: -A ufw-before-input -p tcp -m tcp --dport 10250 -j DROP",)
    assert result.remediation[0].startswith("sudoedit /etc/ufw/before.rules")
    assert "sudo ufw reload" in result.remediation[1]


def test_user_rule_drop_that_ufw_status_shows_is_left_to_the_ufw_cause() -> None:
    result = run_cause(iptables_cause.CAUSE, probed(snapshot(), ufw_status=ufw(DENY_10250), iptables_save=USER_DROP))
    assert result.status is Status.CLEAR
    assert "reported under ufw-blocks-10250" in result.evidence[0].detail


def test_default_policy_drop_that_ufw_status_shows_is_left_to_the_ufw_cause() -> None:
    ssh_only = ufw("22/tcp                     ALLOW IN    Anywhere")
    result = run_cause(iptables_cause.CAUSE, probed(snapshot(), ufw_status=ssh_only, iptables_save=POLICY_DROP))
    assert result.status is Status.CLEAR


@pytest.mark.parametrize(
    ("ufw_status", "dump", "origin"),
    [
        (None, USER_DROP, "/etc/ufw/user.rules"),  # no ufw status to explain it (ufw missing or unreadable)
        (ufw(ALLOW_10250), USER_DROP, "/etc/ufw/user.rules"),  # user.rules edited by hand, not reloaded status
        (ufw(DENY_10250), AFTER_DROP, "/etc/ufw/after.rules"),  # status denies, but with another rule/place
        (ufw(ALLOW_10250), HAND_ADDED, "no UFW file"),
        (ufw(ALLOW_10250, default="allow"), POLICY_DROP, "/etc/default/ufw"),
    ],
    ids=["no-status", "status-allows", "other-place", "hand-added", "policy-vs-allow-default"],
)
def test_refusals_in_ufw_chains_that_status_does_not_explain_are_detected(ufw_status: str | None, dump: str,
                                                                           origin: str) -> None:
    result = run_cause(iptables_cause.CAUSE, probed(snapshot(), ufw_status=ufw_status, iptables_save=dump))
    assert result.status is Status.DETECTED
    assert origin in result.evidence[0].detail


def test_same_rule_on_three_nodes_is_one_subject_and_two_rules_are_two() -> None:
    same = run_cause(iptables_cause.CAUSE, probed(snapshot(), iptables_save=PLAIN_DROP))
    assert same.subjects == ("iptables: -A INPUT -p tcp -m tcp --dport 10250 -j DROP",)
    assert len(same.affected[same.subjects[0]]) == 3
    snap = snapshot()
    nodes = snap.nodes
    assert isinstance(nodes, tuple)
    mixed = run_cause(iptables_cause.CAUSE, probed(snap, {2: probe(nodes[2].name, iptables_save=OTHER_DROP)},
                                                   iptables_save=PLAIN_DROP))
    assert set(mixed.subjects) == {"iptables: -A INPUT -p tcp -m tcp --dport 10250 -j DROP",
                                   "iptables: -A INPUT -s 10.224.0.0/16 -p tcp -m tcp --dport 10250 -j REJECT"}
    policy = run_cause(iptables_cause.CAUSE, probed(snapshot(), iptables_save=chains(
        "-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT", policy="DROP")))
    assert policy.subjects == ("iptables: INPUT policy DROP",)


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        ({"iptables_save": None, "iptables_error": "the node probe could not read the iptables filter table "
                                                   "(the command failed, timed out or its output was too large)"},
         "too large"),
        ({"iptables_save": None}, "no iptables"),
        ({"iptables_save": "*filter\n:FORWARD ACCEPT [0:0]\nCOMMIT\n"}, "INPUT chain"),
        ({"iptables_save": "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -p tcp --dport 22 -j ACCEPT\n"}, "COMMIT"),
        ({"iptables_save": "this is not iptables output"}, "could not read the iptables rules"),
        ({"iptables_save": chains("-A INPUT -m set --match-set blocked src -p tcp --dport 10250 -j DROP")},
         "cannot be decided"),
    ],
    ids=["toolarge-or-failed", "absent", "truncated-no-input", "truncated-no-commit", "garbage", "ambiguous-ipset"],
)
def test_partial_inputs_are_unknown_never_clear(fields: dict[str, Any], says: str) -> None:
    result = run_cause(iptables_cause.CAUSE, probed(snapshot(), **fields))
    assert result.status is Status.UNKNOWN, result
    assert says in (result.reason or ""), result.reason


def test_unprobed_or_failed_nodes_are_unknown() -> None:
    failed = run_cause(iptables_cause.CAUSE, probed(snapshot(), {0: Unavailable("run-command failed: 409")},
                                                    iptables_save="*filter\n:INPUT ACCEPT [0:0]\nCOMMIT\n"))
    assert failed.status is Status.UNKNOWN
    assert "aks-nodepool1-1-vmss000000" in failed.unchecked
    off = run_cause(iptables_cause.CAUSE, snapshot())
    assert off.status is Status.UNKNOWN


ONE_SOURCE_DROP = chains("-A INPUT -s 10.224.0.6/32 -p tcp -m tcp --dport 10250 -j DROP")


def test_without_crictl_a_source_dependent_drop_is_unknown_not_clear() -> None:
    """crictl absent on every node: nobody knows which node hosts the agent, and the rule singles out one."""
    result = run_cause(iptables_cause.CAUSE, probed(snapshot(), containers=None, iptables_save=ONE_SOURCE_DROP))
    assert result.status is Status.UNKNOWN
    assert "depends on the source" in (result.reason or "")
    assert "crictl absent" in (result.reason or "")


def test_without_crictl_a_drop_for_every_source_is_still_detected() -> None:
    result = run_cause(iptables_cause.CAUSE, probed(snapshot(), containers=None, iptables_save=PLAIN_DROP))
    assert result.status is Status.DETECTED


def test_a_drop_from_any_agent_host_is_detected() -> None:
    """Agents on nodes 1 (10.224.0.5) and 2 (10.224.0.6): node 0 refusing only node 2 still breaks the tunnel."""
    snap = snapshot()
    nodes = snap.nodes
    assert isinstance(nodes, tuple)
    no_agent = probe(nodes[0].name, containers=(), iptables_save=ONE_SOURCE_DROP)
    result = run_cause(iptables_cause.CAUSE, probed(snap, {0: no_agent}, iptables_save=ONE_SOURCE_DROP))
    assert result.status is Status.DETECTED
    assert result.affected == {"iptables: -A INPUT -s 10.224.0.6/32 -p tcp -m tcp --dport 10250 -j DROP": (
        nodes[0].name, nodes[1].name)}  # node 2 is not refused from the other agent host, node 1
