"""The REAL node probe script, run inside simulated nodes built from network namespaces.

Every verdict below comes from the kernel: netfilter drops and rejects, the real ufw, nc's own words.
The argument-validation tests need no kernel: they run the script with every tool it could call replaced
by a logger, so a refused argument provably executed nothing (and nothing can reach the network).
"""

from __future__ import annotations

import base64
import gzip
import os
import re
import shutil
import stat
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from devtools.emulator.nodelab import NetnsNodeLab
from devtools.emulator.nodes import ApiServerState, NodeState, UfwConfig
from devtools.emulator.responder import reachable_filter_rules
from shared.probe.frame import parse_frame, render_frame
from shared.probe.params import (
    MAX_TARGETS,
    TUNNEL_CHECKS,
    ProbeArgumentError,
    build_arguments,
    load_script,
    time_bound_seconds,
    validate_arguments,
)
from shared.snapshot import NodeProbe, Unavailable
from tests.netns_lab import require_netns

SCRIPT = load_script()
API = ApiServerState("clu-dns-1a2b3c.hcp.westeurope.azmk8s.io", "20.61.7.10")
TIMEOUT_S = 1
SLACK_S = 1.5  # process start-up around the script (ip netns exec, unshare, bash) on a busy machine

CHAIN_RULES = """\
-A INPUT -j REACHME
-A REACHME -p tcp --dport 22 -j ACCEPT
-A REACHME -g GOTOCHAIN
-A REACHME -j NESTED
-A NESTED -p tcp --dport 9999 -j DROP
-A GOTOCHAIN -p tcp --dport 9998 -j DROP
-A ORPHAN -p tcp --dport 10250 -j DROP
-A FORWARD -j FWDCHAIN
-A FWDCHAIN -j DROP
-A OUTPUT -j OUTCHAIN
-A OUTCHAIN -p tcp --dport 1 -j DROP
"""
HUGE_RULES = "-A INPUT -j BIG\n" + "".join(
    f"-A BIG -s 172.16.{i // 250}.{i % 250 + 1}/32 -p tcp --dport 10250 -j ACCEPT\n" for i in range(3000))

NODES = {
    "clean": NodeState("clean", "10.224.0.10"),
    "drop": NodeState("drop", "10.224.0.11", iptables_rules="-A INPUT -p tcp --dport 10250 -j DROP"),
    "reject": NodeState("reject", "10.224.0.12", iptables_rules="-A INPUT -p tcp --dport 10250 -j REJECT"),
    "ufwdeny": NodeState("ufwdeny", "10.224.0.13",
                         ufw=UfwConfig(enabled=True, rules=("allow 22/tcp", "deny 10250/tcp"))),
    "egress": NodeState("egress", "10.224.0.14", egress_blocked=frozenset({"tcp/443"})),
    "chains": NodeState("chains", "10.224.0.15", iptables_rules=CHAIN_RULES),
    "huge": NodeState("huge", "10.224.0.16", iptables_rules=HUGE_RULES),
    "hostunreach": NodeState("hostunreach", "10.224.0.17", iptables_rules=(
        "-A INPUT -p tcp --dport 10250 -j REJECT --reject-with icmp-host-unreachable")),
    "nokubelet": NodeState("nokubelet", "10.224.0.18", kubelet_listening=False, containers=None),
    "udpdrop": NodeState("udpdrop", "10.224.0.19", egress_blocked=frozenset({"udp/1194"}),
                         containers=("konnectivity-agent",), exited_containers=("aks-link",)),
    "inspected": NodeState("inspected", "10.224.0.20", tls_inspected=True),
}


def ip(name: str) -> str:
    return NODES[name].ip


@dataclass(frozen=True)
class ProbeRun:
    stdout: str
    elapsed: float
    probe: NodeProbe | Unavailable

    @property
    def lines(self) -> list[str]:
        return self.stdout.splitlines()

    def node_probe(self) -> NodeProbe:
        assert isinstance(self.probe, NodeProbe), self.probe
        return self.probe


@pytest.fixture(scope="module")
def lab() -> Iterator[NetnsNodeLab]:
    require_netns("iptables-restore", "ufw", "nc", "unshare", "getent")
    with NetnsNodeLab() as built:
        built.prepare(list(NODES.values()), API)
        yield built


def run_probe(lab: NetnsNodeLab, node: str, targets: Sequence[str], *,
              checks: Sequence[str] = TUNNEL_CHECKS, host: str = API.host) -> ProbeRun:
    """One real run, held to the protocol's two hard limits: output size and running time."""
    started = time.monotonic()
    outcome = lab.run(node, SCRIPT, build_arguments(host, checks, targets, timeout=TIMEOUT_S))
    elapsed = time.monotonic() - started
    assert len(outcome.stdout.encode()) < 4000, f"frame of {len(outcome.stdout.encode())} bytes"
    bound = time_bound_seconds(len(targets), TIMEOUT_S)
    assert elapsed <= bound + SLACK_S, f"took {elapsed:.2f}s, bound {bound:.2f}s"
    return ProbeRun(outcome.stdout, elapsed, parse_frame(outcome.stdout, node))


def decoded_without_counters(text: str | None) -> str:
    assert text is not None
    return re.sub(r"\[\d+:\d+\]", "[c]", text)


# ------------------------------------------------------------------ kernel truth


@pytest.mark.kernel
def test_clean_node_reports_everything_ok(lab: NetnsNodeLab) -> None:
    run = run_probe(lab, "clean", [ip("clean"), ip("egress"), ip("chains")])
    probe = run.node_probe()
    assert probe.reachability == {ip("clean"): "ok", ip("egress"): "ok", ip("chains"): "ok"}
    assert probe.egress == {"tcp/443": "ok", "tcp/9000": "ok", "udp/1194": "ok"}
    assert probe.api_server_ip == API.ip
    assert probe.containers == ("konnectivity-agent",)
    assert "host clean" in run.lines
    assert decoded_without_counters(probe.iptables_save) == "*filter\n:INPUT ACCEPT [c]\nCOMMIT\n"


@pytest.mark.kernel
def test_peer_firewalls_map_to_nc_outcomes(lab: NetnsNodeLab) -> None:
    peers = ["drop", "reject", "ufwdeny", "hostunreach", "nokubelet"]
    probe = run_probe(lab, "clean", [ip(p) for p in peers]).node_probe()
    assert probe.reachability == {
        ip("drop"): "timeout",  # iptables DROP: nothing comes back
        ip("reject"): "refused",  # REJECT (icmp-port-unreachable) reads as a refused connection
        ip("ufwdeny"): "timeout",  # ufw deny is a DROP
        ip("hostunreach"): "noroute",  # REJECT --reject-with icmp-host-unreachable
        ip("nokubelet"): "refused",  # reachable, nothing listening
    }


@pytest.mark.kernel
def test_ufw_section_is_the_real_ufw_status_verbose(lab: NetnsNodeLab) -> None:
    probe = run_probe(lab, "ufwdeny", [ip("clean")]).node_probe()
    real = lab.exec_in_node("ufwdeny", ["ufw", "status", "verbose"])
    assert real.returncode == 0, real.stderr
    assert probe.ufw_status == real.stdout
    assert "Status: active" in probe.ufw_status
    assert re.search(r"^10250/tcp +DENY IN +Anywhere", probe.ufw_status, re.MULTILINE)
    # ufw's own chains are on the INPUT path, so they are in the iptables section as well.
    assert "-A ufw-user-input -p tcp -m tcp --dport 10250 -j DROP" in (probe.iptables_save or "")


@pytest.mark.kernel
def test_render_frame_prints_what_the_script_prints(lab: NetnsNodeLab) -> None:
    run = run_probe(lab, "ufwdeny", [ip("clean"), ip("drop")], checks=["tcp/443", "udp/1194"])
    probe = run.node_probe()
    assert probe.ufw_status is not None
    assert probe.iptables_save is not None
    tls = next(line for line in run.lines if line.startswith("tls "))[len("tls "):]
    rendered = render_frame(host="ufwdeny", containers=probe.containers or (), api_host=API.host,
                            api_ip=probe.api_server_ip, egress=probe.egress, reach=probe.reachability,
                            ufw_status=probe.ufw_status, iptables_rules=probe.iptables_save, tls=tls)

    def decoded(frame: str) -> list[str]:  # gzip bytes may differ between GNU gzip and zlib; text may not
        return [f"{m.group(1)} {gzip.decompress(base64.b64decode(m.group(2))).decode()!r}"
                if (m := re.fullmatch(r"(ufw|iptables) gz (\S+)", line)) else line for line in frame.splitlines()]

    assert decoded(rendered) == decoded(run.stdout)


@pytest.mark.kernel
def test_node_without_ufw_says_absent(lab: NetnsNodeLab) -> None:
    run = run_probe(lab, "drop", [], checks=[])
    assert "ufw absent" in run.lines
    assert run.node_probe().ufw_status is None
    assert "crictl konnectivity-agent" in run.lines


@pytest.mark.kernel
def test_crictl_absent_when_node_has_none(lab: NetnsNodeLab) -> None:
    run = run_probe(lab, "nokubelet", [], checks=[])
    assert "crictl absent" in run.lines
    assert run.node_probe().containers is None


@pytest.mark.kernel
def test_blocked_egress_is_a_timeout(lab: NetnsNodeLab) -> None:
    probe = run_probe(lab, "egress", []).node_probe()
    assert probe.egress == {"tcp/443": "timeout", "tcp/9000": "ok", "udp/1194": "ok"}


@pytest.mark.kernel
def test_udp_1194_answered_by_an_openvpn_server_is_ok(lab: NetnsNodeLab) -> None:
    """The lab's aks-link side answers the client hard reset with a server hard reset (opcode 8)."""
    run = run_probe(lab, "clean", [], checks=["udp/1194"])
    assert "egress udp/1194 ok" in run.lines


@pytest.mark.kernel
def test_udp_1194_silently_dropped_is_silent_not_ok(lab: NetnsNodeLab) -> None:
    """An iptables DROP on the path sends nothing back: that proves nothing either way (issue 8 item 1)."""
    run = run_probe(lab, "udpdrop", [], checks=["tcp/443", "udp/1194"])
    assert run.node_probe().egress == {"tcp/443": "ok", "udp/1194": "silent"}


@pytest.mark.kernel
def test_udp_1194_without_a_listener_is_refused_by_icmp() -> None:
    require_netns("iptables-restore", "nc", "unshare", "getent")
    with NetnsNodeLab(aks_link_server=False) as bare:
        bare.prepare([NodeState("lonely", "10.224.0.30")], API)
        outcome = bare.run("lonely", SCRIPT, build_arguments(API.host, ["udp/1194"], [], timeout=TIMEOUT_S))
    probe = parse_frame(outcome.stdout, "lonely")
    assert isinstance(probe, NodeProbe), probe
    assert probe.egress == {"udp/1194": "refused"}


@pytest.mark.kernel
def test_tls_to_the_api_server_verifies_against_the_cluster_ca_with_alpn(lab: NetnsNodeLab) -> None:
    probe = run_probe(lab, "clean", [], checks=["tcp/443"]).node_probe()
    assert probe.tls is not None
    assert probe.tls.verified is True
    assert probe.tls.alpn == "konnectivity"
    assert "AKS lab cluster CA" in probe.tls.issuer
    assert probe.tls.error is None


@pytest.mark.kernel
def test_tls_inspecting_proxy_is_not_verified_and_names_its_issuer(lab: NetnsNodeLab) -> None:
    probe = run_probe(lab, "inspected", [], checks=["tcp/443"]).node_probe()
    assert probe.egress == {"tcp/443": "ok"}  # TCP alone cannot see the proxy
    assert probe.tls is not None
    assert probe.tls.verified is False
    assert probe.tls.alpn is None
    assert "Contoso TLS Inspection" in probe.tls.issuer


@pytest.mark.kernel
def test_tls_check_ignores_the_system_trust_store(lab: NetnsNodeLab, monkeypatch: pytest.MonkeyPatch) -> None:
    """A proxy whose CA the node trusts system-wide (here through SSL_CERT_FILE, which openssl honours for its
    default store) must still fail: only the cluster CA counts."""
    monkeypatch.setenv("SSL_CERT_FILE", str(lab.inspector_ca))
    trusting = lab.exec_in_node("inspected", ["openssl", "s_client", "-connect", f"{API.ip}:443",
                                              "-servername", API.host], timeout=30)
    assert "Verify return code: 0 (ok)" in trusting.stdout  # the control: the default store does trust it
    probe = run_probe(lab, "inspected", [], checks=["tcp/443"]).node_probe()
    assert probe.tls is not None
    assert probe.tls.verified is False


@pytest.mark.kernel
def test_tunnel_container_states_come_from_crictl_ps_all(lab: NetnsNodeLab) -> None:
    run = run_probe(lab, "udpdrop", [], checks=[])
    probe = run.node_probe()
    assert probe.containers == ("konnectivity-agent",)
    assert probe.container_states == {"konnectivity-agent": "running", "aks-link": "exited restarts=3"}
    assert "ctr konnectivity-agent:running:0,aks-link:exited:3" in run.lines
    absent = run_probe(lab, "nokubelet", [], checks=[])
    assert "ctr absent" in absent.lines
    assert absent.node_probe().container_states == {}


@pytest.mark.kernel
def test_unresolvable_api_host(lab: NetnsNodeLab) -> None:
    run = run_probe(lab, "clean", [ip("clean")], host="no-such-cluster.invalid")
    assert "api no-such-cluster.invalid unresolved" in run.lines
    probe = run.node_probe()
    assert probe.api_server_ip is None
    assert probe.egress == {"tcp/443": "unresolved", "tcp/9000": "unresolved", "udp/1194": "unresolved"}
    assert probe.reachability == {ip("clean"): "ok"}
    assert probe.tls is not None
    assert probe.tls.verified is None
    assert "did not resolve" in (probe.tls.error or "")


@pytest.mark.kernel
def test_huge_rule_set_is_reported_too_large(lab: NetnsNodeLab) -> None:
    run = run_probe(lab, "huge", [ip("clean")])
    line = next(line for line in run.lines if line.startswith("iptables "))
    match = re.fullmatch(r"iptables toolarge (\d+)", line)
    assert match, line
    assert int(match.group(1)) > 3000 * 50
    assert run.node_probe().iptables_save is None
    assert run.node_probe().reachability == {ip("clean"): "ok"}


@pytest.mark.kernel
def test_only_chains_reachable_from_input_are_reported(lab: NetnsNodeLab) -> None:
    rules = run_probe(lab, "chains", [], checks=[]).node_probe().iptables_save
    assert rules is not None
    declared = set(re.findall(r"^:(\S+)", rules, re.MULTILINE))
    assert declared == {"INPUT", "REACHME", "NESTED", "GOTOCHAIN"}
    assert "ORPHAN" not in rules
    assert "FWDCHAIN" not in rules
    assert "OUTCHAIN" not in rules
    assert "-A NESTED -p tcp -m tcp --dport 9999 -j DROP" in rules
    # The script's awk and the responder's Python agree on the same real iptables-save output.
    saved = lab.exec_in_node("chains", ["iptables-save", "-t", "filter"])
    assert decoded_without_counters(reachable_filter_rules(saved.stdout)) == decoded_without_counters(rules)


@pytest.mark.kernel
def test_many_silent_targets_finish_within_the_bound(lab: NetnsNodeLab) -> None:
    silent = [f"10.224.0.{i}" for i in range(100, 117)]  # nobody has these addresses: 17 timeouts
    run = run_probe(lab, "clean", silent, checks=["tcp/443"])
    assert set(run.node_probe().reachability.values()) == {"timeout"}
    assert run.elapsed < len(silent) * TIMEOUT_S / 2  # parallel: far below one check after another


# ------------------------------------------------------------------ argument validation (no kernel)

# Every external command the script could run, replaced by a logger that does nothing else.
_FAKED = ("nc", "getent", "iptables-save", "iptables", "ufw", "crictl", "mktemp", "uname", "timeout", "awk",
          "gzip", "base64", "wc", "tr", "cut", "rm", "kill", "reboot", "touch", "id", "cat", "sleep", "ip", "ss")


@pytest.fixture
def logging_tools(tmp_path: Path) -> tuple[dict[str, str], Path]:
    log = tmp_path / "executed.log"
    fake_dir = tmp_path / "bin"
    fake_dir.mkdir()
    for tool in _FAKED:
        fake = fake_dir / tool
        fake.write_text(f"#!/bin/sh\nprintf '%s\\n' \"{tool} $*\" >> '{log}'\nexit 1\n")
        fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    env = {"PATH": f"{fake_dir}:/usr/bin:/bin", "HOME": str(tmp_path), "LC_ALL": "C"}
    return env, log


def _run_script_with_fakes(args: Sequence[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    bash = "/bin/bash"
    script = Path(__file__).resolve().parent.parent / "shared" / "probe" / "node_probe.sh"
    return subprocess.run([bash, str(script), *args], capture_output=True, text=True, env=env, timeout=30,
                          check=False)


GOOD = ["1", API.host, "tcp/443", "10.224.0.4", "10250", "1"]


def _with(index: int, value: str) -> list[str]:
    args = list(GOOD)
    args[index] = value
    return args


@pytest.mark.parametrize(
    "args",
    [
        _with(3, "1.2.3.4;reboot"),
        _with(3, "1.2.3.4,"),
        _with(3, "1.2.3.4,1.2.3.4"),
        _with(3, "1.2.3.4\n5.6.7.8"),
        _with(3, ",".join(f"10.0.0.{i}" for i in range(MAX_TARGETS + 1))),
        _with(1, "a" * 300),
        _with(1, "$(touch /tmp/aks-probe-pwned)"),
        _with(1, "`id`"),
        _with(1, "-rf"),
        _with(1, "host\nname"),
        _with(2, "tcp/443;reboot"),
        _with(2, "tcp/22"),
        _with(4, "70000"),
        _with(4, "010250"),
        _with(5, "0"),
        _with(5, "11"),
        _with(0, "2"),
        GOOD[:5],
        [*GOOD, "extra"],
    ],
    ids=lambda a: repr(a)[:60],
)
def test_invalid_arguments_give_an_error_frame_and_run_nothing(
        args: list[str], logging_tools: tuple[dict[str, str], Path]) -> None:
    env, log = logging_tools
    done = _run_script_with_fakes(args, env)
    assert not log.exists(), f"commands ran: {log.read_text()}"
    assert not os.path.exists("/tmp/aks-probe-pwned")
    assert len(done.stdout.encode()) < 4000
    probe = parse_frame(done.stdout, "n")
    assert isinstance(probe, Unavailable)
    with pytest.raises(ProbeArgumentError) as mirrored:
        validate_arguments(args)
    assert probe.reason == f"the node probe refused to run: {mirrored.value.reason}"


def _path_without(hidden: set[str], farm: Path) -> str:
    """The standard directories as symlink copies without the `hidden` tools."""
    parts = []
    for directory in ("/usr/bin", "/bin", "/usr/sbin", "/sbin"):
        real = os.path.realpath(directory)
        copy = farm / real.strip("/").replace("/", "_")
        if copy.exists() or not os.path.isdir(real):
            continue
        copy.mkdir(parents=True)
        for entry in set(os.listdir(real)) - hidden:
            (copy / entry).symlink_to(os.path.join(real, entry))
        parts.append(str(copy))
    return ":".join(parts)


@pytest.mark.parametrize(("hidden", "word"), [({"openssl"}, "absent"), (set(), "noca")])
def test_tls_without_openssl_or_cluster_ca_says_so(hidden: set[str], word: str, tmp_path: Path) -> None:
    """No kernel needed: the API host 'resolves' to loopback through a stand-in getent, nc is a stand-in
    that fails, and this machine has no /etc/kubernetes/certs/ca.crt (the CA path is fixed in the script)."""
    if Path("/etc/kubernetes/certs/ca.crt").exists():
        pytest.skip("this machine holds a cluster CA at the fixed path")
    if not hidden and shutil.which("openssl") is None:
        pytest.skip("openssl is not installed here")
    fakes = tmp_path / "fakes"
    fakes.mkdir()
    for tool, body in (("getent", "echo '127.0.0.1       STREAM x'"), ("nc", "exit 1")):
        (fakes / tool).write_text(f"#!/bin/sh\n{body}\n")
        (fakes / tool).chmod(0o755)
    env = {"PATH": f"{fakes}:{_path_without(hidden | {'crictl', 'ufw'}, tmp_path / 'farm')}",
           "HOME": str(tmp_path), "LC_ALL": "C"}
    done = _run_script_with_fakes(["1", API.host, "tcp/443", "-", "10250", "1"], env)
    assert f"tls {word}" in done.stdout.splitlines(), done.stdout
    probe = parse_frame(done.stdout, "n")
    assert isinstance(probe, NodeProbe), probe
    assert probe.tls is not None
    assert probe.tls.verified is None
    assert probe.tls.error


def test_valid_arguments_do_reach_the_tools(logging_tools: tuple[dict[str, str], Path]) -> None:
    """The control for the test above: the loggers do see commands once the arguments pass."""
    env, log = logging_tools
    done = _run_script_with_fakes(GOOD, env)
    assert log.exists()
    assert log.read_text().startswith("mktemp")  # first command after validation; the fake one fails
    assert "error cannot create a temporary directory" in done.stdout
