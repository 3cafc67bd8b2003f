"""The simulated-node executors: the netns lab (kernel) and the labelled in-process responder."""

from __future__ import annotations

import hashlib
import logging
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import pytest

from devtools.emulator.nodelab import NetnsNodeLab
from devtools.emulator.nodes import (
    ApiServerState,
    NodeNotRunningError,
    NodeState,
    UfwConfig,
    filter_table_text,
    make_executor,
)
from devtools.emulator.responder import RESPONDER_MARK, InProcessResponder, kubelet_outcome, render_ufw_status
from shared.probe.frame import parse_frame
from shared.probe.params import TUNNEL_CHECKS, build_arguments, load_script
from shared.snapshot import NodeProbe, Unavailable
from tests.netns_lab import require_netns

SCRIPT = load_script()
API = ApiServerState("lab-dns-0f0f0f.hcp.eastus.azmk8s.io", "20.62.1.5")
TRIO = (
    NodeState("aks-pool-0", "10.224.0.4"),
    NodeState("aks-pool-1", "10.224.0.5", containers=("coredns", "tunnel-front")),
    NodeState("aks-pool-2", "10.224.1.6", containers=(), ufw=UfwConfig(
        enabled=True, rules=("allow from 10.224.0.0/16 to any port 10250 proto tcp",))),
)
KERNEL_TOOLS = ("iptables-restore", "ufw", "nc", "unshare", "getent")


def probe_on(executor: NetnsNodeLab | InProcessResponder, node: str, targets: list[str],
             checks: tuple[str, ...] = TUNNEL_CHECKS) -> NodeProbe:
    outcome = executor.run(node, SCRIPT, build_arguments(API.host, checks, targets, timeout=1))
    probe = parse_frame(outcome.stdout, node)
    assert isinstance(probe, NodeProbe), probe
    return probe


def netns_names() -> set[str]:
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    return {line.split()[0] for line in listed.splitlines() if line.strip()}


def root_link_names() -> set[str]:
    listed = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, check=True).stdout
    return {line.split(":")[1].strip().split("@")[0] for line in listed.splitlines()}


def host_files_digest() -> str:
    digest = hashlib.sha256()
    for path in sorted([*Path("/etc/ufw").rglob("*"), Path("/etc/default/ufw"), Path("/etc/hosts"),
                        Path("/etc/resolv.conf")]):
        if path.is_file():
            digest.update(str(path).encode() + path.read_bytes())
    return digest.hexdigest()


def host_filter_table() -> str:
    saved = subprocess.run(["iptables-save", "-t", "filter"], capture_output=True, text=True, check=True).stdout
    return "\n".join(line for line in saved.splitlines() if not line.startswith("#"))


@pytest.fixture(scope="module")
def trio() -> Iterator[NetnsNodeLab]:
    require_netns(*KERNEL_TOOLS)
    with NetnsNodeLab() as lab:
        lab.prepare(TRIO, API)
        yield lab


# ------------------------------------------------------------------ the kernel lab


@pytest.mark.kernel
def test_setup_and_teardown_leave_nothing_behind() -> None:
    require_netns(*KERNEL_TOOLS)
    files_before, firewall_before = host_files_digest(), host_filter_table()
    links_before = root_link_names()
    lab = NetnsNodeLab()
    try:
        lab.prepare(TRIO, API)
        created = set(lab.namespaces)
        assert len(created) == len(TRIO) + 2  # the nodes, the hub and the API server
        assert created <= netns_names()
        assert not {name for name in root_link_names() - links_before if lab.tag in name}
        probe_on(lab, "aks-pool-2", [])  # ufw ran inside the lab, never on the host
        home = next(Path(tempfile.gettempdir()).glob(f"aks-nodelab-{lab.tag}-*"))
    finally:
        lab.close()
    assert not {name for name in netns_names() if lab.tag in name}
    assert not {name for name in root_link_names() if lab.tag in name}
    assert not home.exists()
    assert host_files_digest() == files_before
    assert host_filter_table() == firewall_before
    lab.close()  # closing twice is harmless


@pytest.mark.kernel
def test_failed_setup_cleans_up() -> None:
    require_netns(*KERNEL_TOOLS)
    broken = NodeState("bad", "10.224.0.9", iptables_rules="-A INPUT -p tcp --dport 10250 -j NO-SUCH-TARGET")
    lab = NetnsNodeLab()
    with pytest.raises(RuntimeError, match="iptables-restore"):
        lab.prepare([TRIO[0], broken], API)
    assert not {name for name in netns_names() if lab.tag in name}


@pytest.mark.kernel
def test_nodes_reach_each_other_and_the_api_server(trio: NetnsNodeLab) -> None:
    ips = [n.ip for n in TRIO]
    for node in TRIO:
        probe = probe_on(trio, node.name, ips)
        assert probe.reachability == dict.fromkeys(ips, "ok"), node.name
        assert probe.egress == {"tcp/443": "ok", "tcp/9000": "ok", "udp/1194": "ok"}
        assert probe.api_server_ip == API.ip


@pytest.mark.kernel
def test_each_node_has_its_own_name_containers_and_ufw(trio: NetnsNodeLab) -> None:
    outcome = trio.run("aks-pool-1", SCRIPT, build_arguments(API.host, [], [], timeout=1))
    assert "host aks-pool-1" in outcome.stdout.splitlines()
    assert probe_on(trio, "aks-pool-1", [], ()).containers == ("tunnel-front",)
    assert probe_on(trio, "aks-pool-2", [], ()).containers == ()
    assert probe_on(trio, "aks-pool-0", [], ()).ufw_status is None
    assert "ALLOW IN    10.224.0.0/16" in (probe_on(trio, "aks-pool-2", [], ()).ufw_status or "")


@pytest.mark.kernel
def test_concurrent_runs_on_different_nodes(trio: NetnsNodeLab) -> None:
    ips = [n.ip for n in TRIO]
    with ThreadPoolExecutor(max_workers=len(TRIO)) as pool:
        futures = {n.name: pool.submit(trio.run, n.name, SCRIPT, build_arguments(API.host, ["tcp/443"], ips,
                                                                                   timeout=1))
                   for n in TRIO}
        outcomes = {name: f.result(timeout=60) for name, f in futures.items()}
    for name, outcome in outcomes.items():
        assert f"host {name}" in outcome.stdout.splitlines()
        probe = parse_frame(outcome.stdout, name)
        assert isinstance(probe, NodeProbe)
        assert probe.reachability == dict.fromkeys(ips, "ok")


@pytest.mark.kernel
def test_update_applies_a_fix_and_a_breakage() -> None:
    require_netns(*KERNEL_TOOLS)
    blocked = NodeState("target", "10.224.0.20", iptables_rules="-A INPUT -p tcp --dport 10250 -j DROP")
    client = NodeState("client", "10.224.0.21")
    with NetnsNodeLab() as lab:
        lab.prepare([blocked, client], API)
        assert probe_on(lab, "client", [blocked.ip], ()).reachability == {blocked.ip: "timeout"}

        lab.update(replace(blocked, iptables_rules=None))
        assert probe_on(lab, "client", [blocked.ip], ()).reachability == {blocked.ip: "ok"}

        lab.update(replace(blocked, iptables_rules=None, ufw=UfwConfig(enabled=True, default_incoming="reject")))
        assert probe_on(lab, "client", [blocked.ip], ()).reachability == {blocked.ip: "refused"}

        lab.update(replace(client, egress_blocked=frozenset({"tcp/9000"})))
        assert probe_on(lab, "client", [], ("tcp/443", "tcp/9000")).egress == {"tcp/443": "ok",
                                                                              "tcp/9000": "timeout"}

        lab.update(replace(blocked, running=False))
        with pytest.raises(NodeNotRunningError):
            lab.run("target", SCRIPT, build_arguments(API.host, [], [], timeout=1))
        assert probe_on(lab, "client", [blocked.ip], ()).reachability == {blocked.ip: "timeout"}


@pytest.mark.kernel
def test_api_server_inside_the_node_subnet_still_goes_through_the_hub() -> None:
    require_netns(*KERNEL_TOOLS)
    private_api = ApiServerState(API.host, "10.224.0.100")  # a private cluster's endpoint in the node subnet
    nodes = [NodeState("open", "10.224.0.50"),
             NodeState("closed", "10.224.0.51", egress_blocked=frozenset({"tcp/443"}))]
    with NetnsNodeLab() as lab:
        lab.prepare(nodes, private_api)
        assert probe_on(lab, "open", [], ("tcp/443",)).egress == {"tcp/443": "ok"}
        closed = probe_on(lab, "closed", [nodes[0].ip], ("tcp/443", "tcp/9000"))
    assert closed.api_server_ip == private_api.ip
    assert closed.egress == {"tcp/443": "timeout", "tcp/9000": "ok"}
    assert closed.reachability == {nodes[0].ip: "ok"}


@pytest.mark.kernel
@pytest.mark.parametrize(
    "ufw",
    [
        UfwConfig(enabled=False, rules=("deny 10250/tcp",)),
        UfwConfig(enabled=True),
        UfwConfig(enabled=True, default_incoming="reject", rules=("allow 22/tcp", "deny 10250/tcp", "reject 9000")),
        UfwConfig(enabled=True, default_incoming="allow", rules=(
            "allow from 10.224.0.0/16 to any port 10250 proto tcp", "allow from 10.0.0.0/8", "limit 22/tcp")),
    ],
    ids=["inactive", "no-rules", "mixed", "from-subnet"],
)
def test_responder_ufw_text_matches_the_real_ufw(ufw: UfwConfig) -> None:
    require_netns(*KERNEL_TOOLS)
    with NetnsNodeLab() as lab:
        lab.prepare([NodeState("u", "10.224.0.30", ufw=ufw)], API)
        real = lab.exec_in_node("u", ["ufw", "status", "verbose"])
    assert real.returncode == 0, real.stderr
    assert render_ufw_status(ufw) == real.stdout


@pytest.mark.kernel
def test_responder_agrees_with_the_lab_on_simple_scenarios() -> None:
    require_netns(*KERNEL_TOOLS)
    nodes = [
        NodeState("src", "10.224.0.40", egress_blocked=frozenset({"tcp/443"})),
        NodeState("drop", "10.224.0.41", iptables_rules="-A INPUT -p tcp --dport 10250 -j DROP"),
        NodeState("reject", "10.224.0.42", iptables_rules="-A INPUT -s 10.224.0.0/16 -p tcp --dport 10250 -j REJECT"),
        NodeState("ufwdeny", "10.224.0.43", ufw=UfwConfig(enabled=True, rules=("deny 10250/tcp",)), containers=None),
        NodeState("ufwok", "10.224.0.44", ufw=UfwConfig(enabled=True, rules=("allow 10250/tcp",))),
        NodeState("idle", "10.224.0.45", kubelet_listening=False),
        NodeState("accept-first", "10.224.0.46", iptables_rules=(
            "-A INPUT -p tcp --dport 10250 -j ACCEPT\n-A INPUT -p tcp --dport 10250 -j DROP")),
        NodeState("udpdrop", "10.224.0.47", egress_blocked=frozenset({"udp/1194"}), exited_containers=("aks-link",)),
        NodeState("inspected", "10.224.0.48", tls_inspected=True),
    ]
    targets = [n.ip for n in nodes]
    responder = InProcessResponder()
    responder.prepare(nodes, API)
    with NetnsNodeLab() as lab:
        lab.prepare(nodes, API)
        for name in ("src", "ufwdeny", "udpdrop", "inspected"):
            real, simulated = probe_on(lab, name, targets), probe_on(responder, name, targets)
            assert simulated.reachability == real.reachability, name
            assert simulated.egress == real.egress, name
            assert simulated.containers == real.containers, name
            assert simulated.container_states == real.container_states, name
            assert real.tls is not None, name
            assert simulated.tls is not None, name
            assert (simulated.tls.verified, simulated.tls.alpn) == (real.tls.verified, real.tls.alpn), name
            assert simulated.api_server_ip == real.api_server_ip, name
            assert simulated.ufw_status == real.ufw_status, name


@pytest.mark.kernel
def test_make_executor_picks_the_lab_as_root(caplog: pytest.LogCaptureFixture) -> None:
    require_netns(*KERNEL_TOOLS)
    with caplog.at_level(logging.INFO, logger="devtools.emulator.nodes"):
        executor = make_executor()
    try:
        assert isinstance(executor, NetnsNodeLab)
        assert "network-namespace lab" in caplog.text
    finally:
        executor.close()


# ------------------------------------------------------------------ the responder (no kernel)


def test_make_executor_can_be_told_to_use_the_responder(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="devtools.emulator.nodes"):
        executor = make_executor(prefer_kernel=False)
    assert isinstance(executor, InProcessResponder)
    assert "in-process responder" in caplog.text


@pytest.fixture
def responder() -> InProcessResponder:
    executor = InProcessResponder()
    executor.prepare(TRIO, API)
    return executor


def test_every_responder_outcome_is_labelled(responder: InProcessResponder) -> None:
    valid = responder.run("aks-pool-0", SCRIPT, build_arguments(API.host, ["tcp/443"], ["10.224.0.5"]))
    invalid = responder.run("aks-pool-0", SCRIPT, ["1", "bad;host", "-", "-", "10250", "1"])
    foreign = responder.run("aks-pool-0", "echo hello", [])
    for outcome in (valid, invalid, foreign):
        assert outcome.stderr.startswith(RESPONDER_MARK)
    assert isinstance(parse_frame(valid.stdout, "aks-pool-0"), NodeProbe)
    refused = parse_frame(invalid.stdout, "aks-pool-0")
    assert isinstance(refused, Unavailable)
    assert "invalid apiHost" in refused.reason
    assert foreign.stdout == ""


def test_responder_reports_declared_state(responder: InProcessResponder) -> None:
    probe = probe_on(responder, "aks-pool-1", [n.ip for n in TRIO])
    assert probe.reachability == dict.fromkeys([n.ip for n in TRIO], "ok")
    assert probe.containers == ("tunnel-front",)
    assert probe.api_server_ip == API.ip
    assert probe.iptables_save == "*filter\n:INPUT ACCEPT [0:0]\nCOMMIT\n"
    responder.update(replace(TRIO[1], running=False))
    with pytest.raises(NodeNotRunningError):
        responder.run("aks-pool-1", SCRIPT, build_arguments(API.host, [], []))
    assert probe_on(responder, "aks-pool-0", ["10.224.0.5"]).reachability == {"10.224.0.5": "timeout"}


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        (NodeState("t", "10.224.0.9"), "ok"),
        (NodeState("t", "10.224.0.9", kubelet_listening=False), "refused"),
        (NodeState("t", "10.224.0.9", iptables_rules="-A INPUT -p tcp --dport 10250 -j DROP"), "timeout"),
        (NodeState("t", "10.224.0.9", iptables_rules="-A INPUT -p tcp --dport 10250 -j REJECT"), "refused"),
        (NodeState("t", "10.224.0.9", iptables_rules="-A INPUT -s 192.168.0.0/16 -p tcp --dport 10250 -j DROP"),
         "ok"),
        (NodeState("t", "10.224.0.9", iptables_rules="-A INPUT -j KUBE-FW\n-A KUBE-FW -p tcp -m multiport "
                                                      "--dports 22,10250 -j DROP"), "timeout"),
        (NodeState("t", "10.224.0.9", ufw=UfwConfig(enabled=True)), "timeout"),
        (NodeState("t", "10.224.0.9", ufw=UfwConfig(enabled=False)), "ok"),
        (NodeState("t", "10.224.0.9", ufw=UfwConfig(enabled=True, rules=("allow 10250/tcp",))), "ok"),
        (NodeState("t", "10.224.0.9", ufw=UfwConfig(enabled=True, rules=(
            "allow from 10.224.0.0/16 to any port 10250 proto tcp",))), "ok"),
        (NodeState("t", "10.224.0.9", ufw=UfwConfig(enabled=True, rules=(
            "allow from 172.16.0.0/12 to any port 10250 proto tcp",))), "timeout"),
        (NodeState("t", "10.224.0.9", ufw=UfwConfig(enabled=True, default_incoming="allow",
                                                     rules=("reject 10250",))), "refused"),
        (None, "timeout"),
    ],
)
def test_responder_kubelet_decision(target: NodeState | None, expected: str) -> None:
    assert kubelet_outcome(NodeState("s", "10.224.0.4"), target) == expected


def test_filter_table_text_declares_user_chains() -> None:
    text = filter_table_text("-A INPUT -j KUBE-FW\n-A KUBE-FW -j DROP\n")
    assert text.splitlines() == ["*filter", ":INPUT ACCEPT [0:0]", ":FORWARD ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]",
                                 ":KUBE-FW - [0:0]", "-A INPUT -j KUBE-FW", "-A KUBE-FW -j DROP", "COMMIT"]
    full = "*filter\n:INPUT DROP [0:0]\nCOMMIT\n"
    assert filter_table_text(full) == full
    with pytest.raises(ValueError, match="egress_blocked"):
        NodeState("x", "10.0.0.1", egress_blocked=frozenset({"443"}))


def test_path_farm_survives_concurrent_first_commands(tmp_path: Path) -> None:
    """Two first commands on a node build the PATH farm at once: neither may fail or see a partial copy."""
    from devtools.emulator.nodelab import _dirs_without

    hidden = {"crictl", "ufw", "ls"}  # ls: always present, so at least one directory is copied
    farm = tmp_path / "path"
    results: list[list[str]] = []
    errors: list[BaseException] = []

    def build() -> None:
        try:
            results.append(_dirs_without(hidden, farm))
        except BaseException as exc:  # the test reports whatever a thread raised
            errors.append(exc)

    threads = [threading.Thread(target=build) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert all(result == results[0] for result in results)
    copies = [Path(d) for d in results[0] if Path(d).is_relative_to(farm)]
    assert copies
    for copy in copies:
        assert not (copy / "ls").exists()
        assert any(copy.iterdir())
    assert not [p for p in farm.iterdir() if p.name.startswith(".building-")]
