"""authorized-ip-ranges-exclude-egress end to end: real SDK clients -> ARM emulator -> `diagnose`.

Each egress kind (managed load balancer IPs, the user's outbound prefix, a NAT gateway, the hub firewall
under userDefinedRouting) is detected when the ranges leave it out, and the fix the report prints
(`az aks update --api-server-authorized-ip-ranges ...`) applied through the emulator clears it. A public
IP or firewall Azure refuses to show turns the cause unknown, never clear. The emulated API server
agrees: while the ranges leave the egress out, no agent connects and every node's log call reads
`No agent available`.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Any

from devtools.emulator.arm import Emulator
from shared.azure.clients import ArmClients
from shared.diagnose import Diagnosis, diagnose
from shared.settings import Settings
from tests.emulator_fixtures import REPO, emulator_fixture  # noqa: F401 (fixture)

ACCESS_SCENARIO = REPO / "devtools" / "emulator" / "scenarios" / "access.json"
CAUSE = "authorized-ip-ranges-exclude-egress"
OFFICE = "73.140.245.0/24"


def scenario() -> Path:
    """The API-server-access fleet: one cluster per egress kind, plus unrestricted and private ones."""
    return ACCESS_SCENARIO


def cluster_id(emu: Emulator, name: str) -> str:
    return next(str(c.id) for c in emu.state.fleet.clusters if c.name == name)


def run(emu: Emulator, name: str) -> Diagnosis:
    settings = Settings.from_env({**os.environ, "NODE_PROBES": "off"})
    clients = ArmClients(settings)
    try:
        return diagnose(cluster_id(emu, name), settings=settings, clients=clients, probes=False)
    finally:
        clients.close()


def cause_of(diagnosis: Diagnosis) -> dict[str, Any]:
    return next(c for c in diagnosis.report["causes"] if c["id"] == CAUSE)


def apply_fix(emu: Emulator, name: str, command: str) -> None:
    """Run the report's `az aks update` against the emulator: the ranges are the argument after the flag."""
    words = shlex.split(command)
    assert words[:3] == ["az", "aks", "update"]
    assert words[words.index("-n") + 1] == name
    ranges = words[words.index("--api-server-authorized-ip-ranges") + 1].split(",")
    emu.state.set_authorized_ip_ranges(cluster_id(emu, name), ranges)


def test_managed_outbound_ip_missing_is_detected_then_the_printed_fix_clears_it(
        emulator: Callable[..., Emulator]) -> None:
    emu = emulator(scenario())
    (egress_ip,) = emu.state.egress_addresses(cluster_id(emu, "aks-lb-missing"))
    found = run(emu, "aks-lb-missing")
    result = cause_of(found)
    assert result["status"] == "detected", result
    assert egress_ip in result["summary"]
    assert any(egress_ip in e["detail"] and "publicIPAddresses" in e["resource"] for e in result["evidence"])
    (command,) = result["remediation"]
    assert command.endswith(f"--api-server-authorized-ip-ranges {OFFICE},{egress_ip}/32")
    assert found.report["verdict"] == "problem"
    # The symptom agrees: no agent could connect, so every node's log call finds no agent.
    assert {n["result"] for n in found.report["symptom"]["nodes"]} == {"no-agent"}
    apply_fix(emu, "aks-lb-missing", command)
    fixed = run(emu, "aks-lb-missing")
    assert cause_of(fixed)["status"] == "clear"
    assert {n["result"] for n in fixed.report["symptom"]["nodes"]} == {"ok"}


def test_user_outbound_ip_inside_the_ranges_is_clear(emulator: Callable[..., Emulator]) -> None:
    emu = emulator(scenario())
    result = cause_of(run(emu, "aks-lb-inside"))
    assert result["status"] == "clear", result
    assert any("20.61.3.7" in e["detail"] for e in result["evidence"])


def test_outbound_prefix_partly_outside_is_detected(emulator: Callable[..., Emulator]) -> None:
    emu = emulator(scenario())
    result = cause_of(run(emu, "aks-prefix-partial"))
    assert result["status"] == "detected", result
    assert any("20.70.0.8/29 outside" in e["detail"] for e in result["evidence"])
    apply_fix(emu, "aks-prefix-partial", result["remediation"][0])
    assert cause_of(run(emu, "aks-prefix-partial"))["status"] == "clear"


def test_nat_gateway_egress_missing_is_detected(emulator: Callable[..., Emulator]) -> None:
    emu = emulator(scenario())
    (egress_ip,) = emu.state.egress_addresses(cluster_id(emu, "aks-nat"))
    result = cause_of(run(emu, "aks-nat"))
    assert result["status"] == "detected", result
    assert egress_ip in result["summary"]
    assert any("used by aks-natgw-" in e["detail"] for e in result["evidence"])


def test_hub_firewall_public_ip_missing_is_detected(emulator: Callable[..., Emulator]) -> None:
    emu = emulator(scenario())
    result = cause_of(run(emu, "aks-udr"))
    assert result["status"] == "detected", result
    assert "20.90.1.1" in result["summary"]
    assert result["remediation"][0].endswith(f"{OFFICE},20.90.1.1/32")


def test_public_ip_forbidden_is_unknown_with_the_403(emulator: Callable[..., Emulator]) -> None:
    emu = emulator(scenario())
    emu.faults.add(403, operation="PublicIPAddresses.Get", count=None)
    result = cause_of(run(emu, "aks-lb-inside"))
    assert result["status"] == "unknown", result
    assert "403" in result["reason"]
    assert result["unchecked"]


def test_prefix_forbidden_is_unknown(emulator: Callable[..., Emulator]) -> None:
    emu = emulator(scenario())
    emu.faults.add(403, operation="PublicIPPrefixes.Get", count=None)
    result = cause_of(run(emu, "aks-prefix-partial"))
    assert result["status"] == "unknown", result
    assert "403" in result["reason"]


def test_firewall_unreadable_is_unknown(emulator: Callable[..., Emulator]) -> None:
    emu = emulator(scenario())
    emu.faults.add(403, operation="AzureFirewalls.Get", count=None)
    result = cause_of(run(emu, "aks-udr"))
    assert result["status"] == "unknown", result
    assert "egress device" in result["reason"]
    assert "403" in result["reason"]


def test_not_applicable_without_ranges_and_on_private_clusters(emulator: Callable[..., Emulator]) -> None:
    """And nothing is read for them: egress IPs are only collected where authorized ranges are set."""
    emu = emulator(scenario())
    assert cause_of(run(emu, "aks-open"))["status"] == "not_applicable"
    assert cause_of(run(emu, "aks-private"))["status"] == "not_applicable"
    assert emu.stats.calls("PublicIPAddresses.Get") == 0


def test_egress_through_a_third_party_appliance_is_unknown(emulator: Callable[..., Emulator]) -> None:
    """userDefinedRouting to an appliance that is not an Azure Firewall: its public IPs cannot be read."""
    emu = emulator(scenario())
    result = cause_of(run(emu, "aks-udr-nva"))
    assert result["status"] == "unknown", result
    assert "10.40.9.9" in result["reason"]
    assert "egress device" in result["reason"]
