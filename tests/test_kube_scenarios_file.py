"""The bundled tunnel scenarios (devtools/emulator/scenarios/tunnel.json): what each cluster must report for
the symptom and konnectivity-agent-unhealthy, through the real SDK and `kubernetes` clients."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.emulator_fixtures import REPO, emulator_fixture  # noqa: F401 (fixture)
from tests.kube_scenarios import Start, by_node, cause, node_names, run
from tests.netns_lab import netns_unavailable_reason

SCENARIO: Path = REPO / "devtools" / "emulator" / "scenarios" / "tunnel.json"
KONN = "konnectivity-agent-unhealthy"

# cluster -> (konnectivity status, symptom status, a phrase the cause's evidence or reason must hold)
EXPECTED = {
    "aks-tunnel-healthy": ("clear", "ok", ""),
    "aks-agent-oom": ("detected", "ok", "OOMKilled"),
    "aks-agent-few": ("detected", "ok", "fewer than the 3"),
    "aks-agent-pending": ("detected", "ok", "Pending (0/3 nodes are available: 3 Insufficient memory."),
    "aks-kubelet-blocked": ("clear", "degraded", ""),
    "aks-local-accounts": ("clear", "ok", ""),
    "aks-rbac-denied": ("unknown", "unknown", "Kubernetes RBAC forbids the monitor's identity"),
    "aks-private-unseen": ("unknown", "unknown", "private cluster: the monitor has no network line of sight"),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_tunnel_scenario(emulator: Start, name: str) -> None:
    emu = emulator(SCENARIO)
    found = run(emu, name)
    konn_status, symptom_status, phrase = EXPECTED[name]
    konn = cause(found, KONN)
    assert konn["status"] == konn_status, konn
    text = " ".join([konn["reason"] or "", *(e["detail"] for e in konn["evidence"])])
    assert phrase in text
    assert found.report["symptom"]["status"] == symptom_status, found.report["symptom"]
    if symptom_status == "degraded" or konn_status == "detected":
        assert found.report["verdict"] == "problem"


@pytest.mark.kernel
def test_blocked_kubelet_scenario_on_the_kernel(emulator: Start) -> None:
    reason = netns_unavailable_reason()
    if reason is not None:
        pytest.skip(f"kernel test skipped: {reason}")
    emu = emulator(SCENARIO, prefer_kernel=True)
    found = run(emu, "aks-kubelet-blocked")
    names = node_names(emu, "aks-kubelet-blocked")
    assert [by_node(found)[n]["result"] for n in names] == ["ok", "ok", "timeout"]
