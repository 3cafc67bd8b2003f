"""nsg-blocks-10250 over hand-built snapshots: the tricky layouts from the field."""

from dataclasses import replace

from shared.causes import nsg_blocks_10250, run_cause
from shared.model import CauseId, Status
from shared.netrules.nsg_types import AdminRule
from shared.snapshot import ActivityEvent, Unavailable
from tests.builders import NSG_ID, rule, snapshot

CAUSE = nsg_blocks_10250.CAUSE


def test_default_rules_allow_node_to_node() -> None:
    result = run_cause(CAUSE, snapshot())
    assert result.status is Status.CLEAR
    assert result.id is CauseId.NSG


def test_subnet_deny_with_nic_allow_is_still_blocked() -> None:
    deny = rule("DenyKubelet", 200, "Deny")
    allow = rule("AllowKubelet", 100, "Allow", nsg_id="nic")
    result = run_cause(CAUSE, snapshot(subnet_rules=(deny,), nic_rules=(allow,)))
    assert result.status is Status.DETECTED
    assert result.subjects == (deny.id,)
    assert "DenyKubelet" in result.summary
    assert any("priority 200" in e.detail for e in result.evidence)


def test_nic_deny_blocks_even_when_subnet_allows() -> None:
    deny = rule("NicDeny", 300, "Deny", nsg_id="nic")
    result = run_cause(CAUSE, snapshot(subnet_rules=(rule("Allow", 100, "Allow"),), nic_rules=(deny,)))
    assert result.status is Status.DETECTED
    assert "NicDeny" in result.summary


def test_deny_port_range_covering_10250() -> None:
    deny = rule("DenyHighPorts", 400, "Deny", port="10000-11000")
    result = run_cause(CAUSE, snapshot(subnet_rules=(deny,)))
    assert result.status is Status.DETECTED


def test_deny_range_not_covering_10250_is_clear() -> None:
    deny = rule("DenyOther", 400, "Deny", port="10251-11000")
    assert run_cause(CAUSE, snapshot(subnet_rules=(deny,))).status is Status.CLEAR


def test_lower_priority_number_allow_shadows_deny() -> None:
    rules = (rule("AllowKubelet", 150, "Allow", source="VirtualNetwork"), rule("DenyKubelet", 200, "Deny"))
    assert run_cause(CAUSE, snapshot(subnet_rules=rules)).status is Status.CLEAR


def test_deny_only_from_outside_the_vnet_is_clear() -> None:
    deny = rule("DenyInternet", 100, "Deny", source="Internet")
    assert run_cause(CAUSE, snapshot(subnet_rules=(deny,))).status is Status.CLEAR


def test_outbound_deny_on_the_source_is_detected() -> None:
    deny = rule("DenyOut", 300, "Deny", direction="Outbound")
    result = run_cause(CAUSE, snapshot(subnet_rules=(deny,)))
    assert result.status is Status.DETECTED
    create = next(step for step in result.remediation if "nsg rule create" in step)
    assert "--direction Outbound --access Allow" in create
    assert "--priority 299" in create
    assert "--destination-address-prefixes 10.224.0.0/16" in create


def test_blocking_rule_at_priority_100_can_only_be_deleted_or_renumbered() -> None:
    deny = rule("DenyFirst", 100, "Deny")
    result = run_cause(CAUSE, snapshot(subnet_rules=(deny,)))
    assert result.status is Status.DETECTED
    assert not any("nsg rule create" in step for step in result.remediation)
    assert any("nsg rule delete" in step for step in result.remediation)
    assert any("No priority below 100" in step for step in result.remediation)


def test_remediation_uses_a_free_priority_below_the_blocking_rule() -> None:
    rules = (rule("DenyKubelet", 200, "Deny"), rule("Taken", 199, "Allow", port="22"))
    result = run_cause(CAUSE, snapshot(subnet_rules=rules))
    create = next(step for step in result.remediation if "nsg rule create" in step)
    assert "--priority 198" in create
    assert "--nsg-name agentpool-nsg" in create
    assert "--destination-port-ranges 10250" in create
    assert "--source-address-prefixes 10.224.0.0/16" in create
    assert any("nsg rule delete" in step and "--name DenyKubelet" in step for step in result.remediation)


def test_change_that_introduced_the_rule_is_named() -> None:
    deny = rule("DenyKubelet", 200, "Deny")
    change = ActivityEvent("Microsoft.Network/networkSecurityGroups/securityRules/write", deny.id.upper(),
                           "alice@contoso.com", "2026-11-27T10:00:00Z")
    result = run_cause(CAUSE, snapshot(subnet_rules=(deny,), nsg_changes=(change,)))
    assert any("alice@contoso.com" in e.detail for e in result.evidence)


def test_avnm_deny_wins_over_nsg_allow() -> None:
    admin = AdminRule("BlockKubelet", 10, "Inbound", "Deny", "Tcp", destination_ports=("10250",), id="avnm-rule")
    result = run_cause(CAUSE, snapshot(subnet_rules=(rule("Allow", 100, "Allow"),), admin_rules=(admin,)))
    assert result.status is Status.DETECTED
    assert any("Virtual Network Manager" in step for step in result.remediation)


def test_avnm_always_allow_beats_nsg_deny() -> None:
    admin = AdminRule("AlwaysKubelet", 10, "Inbound", "AlwaysAllow", "Tcp", destination_ports=("10250",))
    admin_out = AdminRule("AlwaysKubeletOut", 10, "Outbound", "AlwaysAllow", "Tcp", destination_ports=("10250",))
    result = run_cause(CAUSE, snapshot(subnet_rules=(rule("Deny", 100, "Deny"),), admin_rules=(admin, admin_out)))
    assert result.status is Status.CLEAR


def test_unknown_service_tag_is_unknown_not_a_guess() -> None:
    deny = rule("DenyCloud", 100, "Deny", source="AzureCloud")
    result = run_cause(CAUSE, snapshot(subnet_rules=(deny,)))
    assert result.status is Status.UNKNOWN
    assert "AzureCloud" in (result.reason or "")


def test_unreadable_nsgs_are_unknown_with_the_reason() -> None:
    result = run_cause(CAUSE, snapshot(nsgs=Unavailable("access denied (403) reading NSG x")))
    assert result.status is Status.UNKNOWN
    assert result.reason == "access denied (403) reading NSG x"


def test_missing_nsg_in_snapshot_makes_the_check_unknown_not_clear() -> None:
    snap = snapshot()
    assert not isinstance(snap.nsgs, Unavailable)
    broken = replace(snap, nsgs={})
    result = run_cause(CAUSE, broken)
    assert result.status is Status.UNKNOWN
    assert NSG_ID in (result.reason or "")


def test_deny_from_the_virtualnetwork_tag_is_detected() -> None:
    deny = rule("DenyVnetKubelet", 200, "Deny", source="VirtualNetwork")
    result = run_cause(CAUSE, snapshot(subnet_rules=(deny,)))
    assert result.status is Status.DETECTED
