"""The symptom against the real kernel: the emulated API server's pod-log call dials the target kubelet with
`nc` from the agent's node network namespace, so what each node reports is what the kernel did.

Node layout of the lab cluster (agents on node 0 and node 5):
  0, 1 plain -> ok; 2 ufw deny incoming -> timeout; 3 iptables DROP 10250 -> timeout;
  4 iptables REJECT 10250 -> refused; 5 the same ufw as node 2, but it hosts an agent: Konnectivity routes
  the call to that agent (destHost), whose node-local dial ufw lets through (it accepts loopback) -> ok, as
  Microsoft's article describes ("logs only work for pods on the nodes where the tunnel component runs").
  (An iptables DROP/REJECT without an interface match also hits the node-local dial: the kernel says so.)
A second cluster has TCP 443 to the API server dropped on every node's egress path -> No agent available.
"""

from __future__ import annotations

import pytest

from tests.emulator_fixtures import emulator_fixture  # noqa: F401 (fixture)
from tests.kube_scenarios import Start, by_node, cluster, fleet, node_names, run
from tests.netns_lab import netns_unavailable_reason

DROP = ["-A INPUT -p tcp -m tcp --dport 10250 -j DROP"]
REJECT = ["-A INPUT -p tcp -m tcp --dport 10250 -j REJECT --reject-with tcp-reset"]
UFW = {"enabled": True, "defaultIncoming": "deny", "rules": ["allow 22/tcp"]}


@pytest.fixture
def kernel(emulator: Start) -> Start:
    reason = netns_unavailable_reason()
    if reason is not None:
        pytest.skip(f"kernel test skipped: {reason}")
    return emulator


@pytest.mark.kernel
def test_each_node_reports_what_the_kernel_did(kernel: Start) -> None:
    emu = kernel(fleet(
        cluster("aks-lab", count=6, nodes=[{"index": 2, "ufw": UFW}, {"index": 3, "iptables": DROP},
                                           {"index": 4, "iptables": REJECT}, {"index": 5, "ufw": UFW}],
                kube={"agents": [{"node": 0}, {"node": 5}]}),
        cluster("aks-noegress", count=2, nodes=[{"index": 0, "egressBlocked": ["tcp/443"]},
                                                {"index": 1, "egressBlocked": ["tcp/443"]}]),
    ), prefer_kernel=True)
    found = run(emu, "aks-lab")
    names = node_names(emu, "aks-lab")
    got = {names.index(n): r["result"] for n, r in by_node(found).items()}
    assert got == {0: "ok", 1: "ok", 2: "timeout", 3: "timeout", 4: "refused", 5: "ok"}, by_node(found)
    details = by_node(found)
    assert details[names[3]]["detail"].endswith("dial tcp 10.224.0.7:10250: i/o timeout")
    assert "connect: connection refused" in details[names[4]]["detail"]
    assert found.report["symptom"]["status"] == "degraded"
    assert emu.kube is not None
    assert set(emu.kube.dials) == {"kernel (nc in the agent node's network namespace)"}

    blocked = run(emu, "aks-noegress")
    assert {r["result"] for r in blocked.report["symptom"]["nodes"]} == {"no-agent"}
    assert all(r["detail"].endswith(": No agent available") for r in blocked.report["symptom"]["nodes"])


@pytest.mark.kernel
def test_fixing_the_block_turns_the_node_ok(kernel: Start) -> None:
    emu = kernel(fleet(cluster("aks-fix", count=2, nodes=[{"index": 1, "iptables": DROP}])), prefer_kernel=True)
    names = node_names(emu, "aks-fix")
    assert by_node(run(emu, "aks-fix"))[names[1]]["result"] == "timeout"
    emu.state.patch_node_sim(names[1], iptables=None)
    fixed = run(emu, "aks-fix")
    assert {r["result"] for r in fixed.report["symptom"]["nodes"]} == {"ok"}
    assert fixed.report["symptom"]["status"] == "ok"


@pytest.mark.kernel
def test_each_broken_node_is_explained_by_the_cause_the_node_probe_found(kernel: Start) -> None:
    """The same kernel answers both sides: the probes' ufw/iptables reads on each node, and the tunnel call.
    Every broken node must be explained by the rule found on that node; no `tunnel-unexplained`."""
    emu = kernel(fleet(
        cluster("aks-explain", count=4, nodes=[{"index": 1, "ufw": UFW}, {"index": 2, "iptables": DROP},
                                               {"index": 3, "iptables": REJECT}],
                kube={"agents": [{"node": 0}]}),
        cluster("aks-egress", count=2, nodes=[{"index": 0, "egressBlocked": ["tcp/443"]},
                                              {"index": 1, "egressBlocked": ["tcp/443"]}]),
    ), prefer_kernel=True)
    found = run(emu, "aks-explain", probes=True, mode="all")
    names = node_names(emu, "aks-explain")
    assert {names.index(n): r["result"] for n, r in by_node(found).items()} == {
        0: "ok", 1: "timeout", 2: "timeout", 3: "refused"}
    explanation = found.report["symptom"]["explanation"]
    assert explanation["status"] == "clear", explanation
    assert explanation["explainedBy"] == {names[1]: ["ufw-blocks-10250"], names[2]: ["iptables-blocks-10250"],
                                          names[3]: ["iptables-blocks-10250"]}
    assert found.report["verdict"] == "problem"

    egress = run(emu, "aks-egress", probes=True, mode="all")
    assert {r["result"] for r in egress.report["symptom"]["nodes"]} == {"no-agent"}
    assert next(c for c in egress.report["causes"] if c["id"] == "egress-tunnel-port-blocked")["status"] == "detected"
    assert egress.report["symptom"]["explanation"]["status"] == "clear"
