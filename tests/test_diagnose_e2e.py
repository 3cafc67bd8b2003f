"""`diagnose` end to end: real SDK clients -> local ARM emulator -> (as root) real node namespaces.

Each cause is detected on the demo fleet, then fixed through the emulator and seen to clear; the
not-applicable and unknown paths are driven with Azure-like faults.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest

from devtools.emulator.arm import Emulator
from shared.azure.clients import ArmClients
from shared.diagnose import Diagnosis, diagnose
from shared.settings import Settings
from tests.emulator_fixtures import DEMO_SCENARIO, emulator_fixture  # noqa: F401 (fixture)
from tests.netns_lab import netns_unavailable_reason


def cluster_id(emu: Emulator, name: str) -> str:
    for cluster in emu.state.fleet.clusters:
        if cluster.name == name:
            return str(cluster.id)
    raise KeyError(name)


def run(emu: Emulator, name: str, *, probes: bool = True, **env: str) -> Diagnosis:
    settings = Settings.from_env({**os.environ, "NODE_PROBES": "all", **env})
    clients = ArmClients(settings)
    try:
        return diagnose(cluster_id(emu, name), settings=settings, clients=clients, probes=probes)
    finally:
        clients.close()


def status(diagnosis: Diagnosis, cause: str) -> str:
    return next(c["status"] for c in diagnosis.report["causes"] if c["id"] == cause)


def cause_of(diagnosis: Diagnosis, cause: str) -> dict[str, Any]:
    return next(c for c in diagnosis.report["causes"] if c["id"] == cause)


@pytest.fixture
def kernel_emulator(emulator: Callable[..., Emulator]) -> Emulator:
    """The demo fleet with every simulated node a real network namespace (root only)."""
    reason = netns_unavailable_reason()
    if reason is not None:
        pytest.skip(f"kernel test skipped: {reason}")
    return emulator(DEMO_SCENARIO, prefer_kernel=True)


# ------------------------------------------------------------------ control plane


def test_nsg_deny_detected_names_the_change_then_clears(emulator: Callable[..., Emulator]) -> None:
    emu = emulator()
    found = run(emu, "aks-nsg-deny", probes=False)
    nsg = cause_of(found, "nsg-blocks-10250")
    assert nsg["status"] == "detected", nsg
    assert "deny-kubelet" in nsg["summary"]
    assert any("jane.doe@contoso.com" in e["detail"] for e in nsg["evidence"])
    assert any("az network nsg rule create" in r and "--priority 199" in r for r in nsg["remediation"])
    assert found.report["verdict"] == "problem"
    emu.state.remove_nsg_rule("nsg-snet-aks", "deny-kubelet", caller="fixer@contoso.com")
    assert status(run(emu, "aks-nsg-deny", probes=False), "nsg-blocks-10250") == "clear"


def test_snat_exhaustion_detected_then_clears(emulator: Callable[..., Emulator]) -> None:
    emu = emulator()
    found = run(emu, "aks-snat", probes=False)
    snat = cause_of(found, "snat-port-exhaustion")
    assert snat["status"] == "detected"
    assert any("--load-balancer-outbound-ports" in r for r in snat["remediation"])
    quiet = [{"name": "SnatConnectionCount", "dimensions": {"BackendIPAddress": ip, "ConnectionState": state},
              "values": [10, 10]} for ip in ("10.224.0.4", "10.224.0.5") for state in ("successful", "failed")]
    quiet = [s if s["dimensions"]["ConnectionState"] == "successful" else {**s, "values": [0, 0]} for s in quiet]
    quiet += [{"name": n, "dimensions": {"BackendIPAddress": ip}, "values": [v, v]}
              for ip in ("10.224.0.4", "10.224.0.5") for n, v in (("AllocatedSnatPorts", 1024), ("UsedSnatPorts", 10))]
    emu.state.set_metrics(cluster_id(emu, "aks-snat"), quiet)
    assert status(run(emu, "aks-snat", probes=False), "snat-port-exhaustion") == "clear"


def test_not_applicable_paths(emulator: Callable[..., Emulator]) -> None:
    emu = emulator()
    assert status(run(emu, "aks-private", probes=False), "snat-port-exhaustion") == "not_applicable"
    assert status(run(emu, "aks-egress-fw", probes=False), "snat-port-exhaustion") == "not_applicable"


def test_nat_gateway_cluster_reads_the_nat_gateway_metrics(emulator: Callable[..., Emulator]) -> None:
    emu = emulator()
    snat = cause_of(run(emu, "aks-ufw", probes=False), "snat-port-exhaustion")
    assert snat["status"] == "clear"
    assert "natGateways" in snat["evidence"][0]["resource"]


def test_forbidden_metrics_make_only_snat_unknown(emulator: Callable[..., Emulator]) -> None:
    emu = emulator()
    emu.faults.add(403, operation="Metrics.List", count=100)
    found = run(emu, "aks-nsg-deny", probes=False)
    snat = cause_of(found, "snat-port-exhaustion")
    assert snat["status"] == "unknown"
    assert "403" in snat["reason"]
    assert status(found, "nsg-blocks-10250") == "detected"


def test_throttling_storm_past_retries_is_unknown_not_clear(emulator: Callable[..., Emulator]) -> None:
    emu = emulator()
    emu.faults.add(429, operation="NetworkSecurityGroups.Get", count=1000, retry_after=1)
    found = run(emu, "aks-healthy", probes=False)
    nsg = cause_of(found, "nsg-blocks-10250")
    assert nsg["status"] == "unknown"
    assert "429" in nsg["reason"] or "throttl" in nsg["reason"]


def test_availability_set_cluster_is_unknown_with_reason(emulator: Callable[..., Emulator]) -> None:
    found = run(emulator(), "aks-legacy-as", probes=False)
    assert {c["status"] for c in found.report["causes"]} == {"unknown"}
    assert "availability sets" in found.report["causes"][0]["reason"]


def test_report_contract_and_bounded_reads(emulator: Callable[..., Emulator]) -> None:
    emu = emulator()
    emu.stats.reset()
    found = run(emu, "aks-healthy", probes=False)
    assert [c["id"] for c in found.report["causes"]] == [
        "nsg-blocks-10250", "ufw-blocks-10250", "iptables-blocks-10250", "egress-tunnel-port-blocked",
        "snat-port-exhaustion", "konnectivity-agent-unhealthy", "authorized-ip-ranges-exclude-egress"]
    snapshot = emu.stats.snapshot().to_json()
    per_resource = snapshot["callsByResource"]
    assert per_resource
    # Metrics are two different queries on one resource (connections by state; ports by backend).
    twice = [c for c in per_resource if c["count"] > (2 if c["operation"] == "Metrics.List" else 1)]
    assert twice == []
    assert snapshot["total"] <= 12, snapshot


# ------------------------------------------------------------------ the CLI


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "shared", *args], capture_output=True, text=True, timeout=300,
                          check=False, env={**os.environ, "NODE_PROBES": "off"})


def test_cli_json_and_exit_codes(emulator: Callable[..., Emulator]) -> None:
    emu = emulator()
    done = _cli("diagnose", cluster_id(emu, "aks-nsg-deny"), "--json", "--no-probes")
    assert done.returncode == 1, done.stderr
    assert json.loads(done.stdout)["verdict"] == "problem"
    inconclusive = _cli("diagnose", cluster_id(emu, "aks-healthy"), "--no-probes")
    assert inconclusive.returncode == 3  # node checks were not run: never "healthy" by default
    assert "aks-healthy" in inconclusive.stdout


def test_cli_missing_and_forbidden_clusters_are_one_line_errors(emulator: Callable[..., Emulator]) -> None:
    emu = emulator()
    missing = cluster_id(emu, "aks-healthy").rsplit("/", 1)[0] + "/does-not-exist"
    done = _cli("diagnose", missing)
    assert done.returncode == 2
    assert "not found" in done.stderr
    assert done.stderr.strip().count("\n") == 0
    emu.faults.add(403, operation="ManagedClusters.Get", count=10)
    denied = _cli("diagnose", cluster_id(emu, "aks-healthy"))
    assert denied.returncode == 2
    assert "403" in denied.stderr or "denied" in denied.stderr


# ------------------------------------------------------------------ node probes (real kernel)


@pytest.mark.kernel
def test_ufw_block_detected_then_cleared(kernel_emulator: Emulator) -> None:
    emu = kernel_emulator
    found = run(emu, "aks-ufw")
    ufw = cause_of(found, "ufw-blocks-10250")
    assert ufw["status"] == "detected", ufw
    assert any("ufw" in r for r in ufw["remediation"])
    assert found.report["symptom"]["status"] == "degraded"
    blocked = found.report["symptom"]["unreachableNodes"]
    assert len(blocked) == 1
    emu.state.patch_node_sim(blocked[0], ufw={"enabled": True, "defaultIncoming": "deny",
                                              "rules": ["allow 22/tcp", "allow 10250/tcp"]})
    fixed = run(emu, "aks-ufw")
    assert status(fixed, "ufw-blocks-10250") == "clear"
    assert fixed.report["symptom"]["status"] == "ok"


@pytest.mark.kernel
def test_iptables_drop_in_a_user_chain_detected_then_cleared(kernel_emulator: Emulator) -> None:
    emu = kernel_emulator
    found = run(emu, "aks-iptables")
    rule = cause_of(found, "iptables-blocks-10250")
    assert rule["status"] == "detected", rule
    assert any("KUBELET-GUARD" in r for r in rule["remediation"])
    assert status(found, "ufw-blocks-10250") == "not_applicable"  # those nodes have no ufw
    node = found.report["symptom"]["unreachableNodes"][0]
    emu.state.patch_node_sim(node, iptables=[])
    assert status(run(emu, "aks-iptables"), "iptables-blocks-10250") == "clear"


@pytest.mark.kernel
def test_egress_block_detected_then_cleared(kernel_emulator: Emulator) -> None:
    emu = kernel_emulator
    found = run(emu, "aks-egress-fw")
    egress = cause_of(found, "egress-tunnel-port-blocked")
    assert egress["status"] == "detected", egress
    assert "tcp/443" in egress["summary"]
    assert any("AzureKubernetesService" in r for r in egress["remediation"])
    for node in [n.name for c in emu.state.fleet.clusters if c.name == "aks-egress-fw" for p in c.pools
                 for n in p.nodes]:
        emu.state.patch_node_sim(node, egressBlocked=[])
    emu.state.set_firewall_rules("fw-hub", application=[{
        "name": "aks-tunnel", "priority": 100, "action": "Allow",
        "rules": [{"name": "apiserver", "protocols": [{"protocolType": "Https", "port": 443}],
                   "sourceAddresses": ["10.20.0.0/16"], "fqdnTags": ["AzureKubernetesService"]}]}])
    fixed = cause_of(run(emu, "aks-egress-fw"), "egress-tunnel-port-blocked")
    assert fixed["status"] == "clear", fixed


@pytest.mark.kernel
def test_healthy_cluster_with_probes_is_healthy(kernel_emulator: Emulator) -> None:
    found = run(kernel_emulator, "aks-healthy")
    statuses = {c["id"]: c["status"] for c in found.report["causes"]}
    assert found.report["verdict"] == "healthy", statuses
    assert found.report["cluster"]["tunnel"] == "konnectivity"
    assert found.report["symptom"]["status"] == "ok"


def test_run_command_timeout_and_lost_output_are_unknown(emulator: Callable[..., Emulator]) -> None:
    emu = emulator(run_command_timeout=1.0)
    for node in [n.name for c in emu.state.fleet.clusters if c.name == "aks-healthy" for p in c.pools
                 for n in p.nodes]:
        emu.state.set_node(node, output_lost=True)
    found = run(emu, "aks-healthy")
    for cause in ("ufw-blocks-10250", "iptables-blocks-10250", "egress-tunnel-port-blocked"):
        result = cause_of(found, cause)
        assert result["status"] == "unknown", result
    assert "egress" in cause_of(found, "ufw-blocks-10250")["reason"]
