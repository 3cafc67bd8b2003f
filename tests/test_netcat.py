"""netcat-openbsd output parsing, proven against the REAL `nc` in network namespaces.

Kernel tests make each outcome happen for real (listener, iptables DROP/REJECT in the server
namespace, unreachable routes, a resolver that cannot be reached) and parse what nc printed. The
same outputs are kept in tests/fixtures/nc/<outcome>__<scenario>.txt for the pure tests; set
NC_FIXTURES_UPDATE=1 to rewrite them from a kernel run.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from shared.netrules.errors import ParseError
from shared.netrules.netcat import NetcatResult, parse_netcat, parse_netcat_all
from tests.netns_lab import Host, host_pair, require_netns, run, tcp_listener

FIXTURES = Path(__file__).parent / "fixtures" / "nc"
OCTET = 62


# --- pure tests on stored real outputs and hand-written variants ------------------------------------

STORED = sorted(FIXTURES.glob("*__*.txt"))


def test_stored_real_outputs_exist() -> None:
    outcomes = {p.name.split("__")[0] for p in STORED}
    assert {"succeeded", "timeout", "refused", "no_route", "unresolved"} <= outcomes


@pytest.mark.parametrize("path", STORED, ids=[p.stem for p in STORED])
def test_stored_real_output_outcome(path: Path) -> None:
    expected = path.name.split("__")[0]
    results = parse_netcat_all(path.read_text())
    if expected == "multi":
        assert [r.outcome for r in results] == ["refused", "succeeded", "refused"]
        assert [r.port for r in results] == [10249, 10250, 10251]
    else:
        assert len(results) == 1
        assert results[0].outcome == expected


# (nc line, outcome, host, port, protocol, address)
LINE_CASES: list[tuple[str, str, str | None, int | None, str | None, str | None]] = [
    ("Connection to 10.0.0.5 10250 port [tcp/*] succeeded!", "succeeded", "10.0.0.5", 10250, "tcp", None),
    ("Connection to aks-node (10.0.0.5) 443 port [tcp/https] succeeded!", "succeeded", "aks-node", 443, "tcp",
     "10.0.0.5"),
    ("Connection to ::1 10250 port [tcp/*] succeeded!", "succeeded", "::1", 10250, "tcp", None),
    ("nc: connect to 10.0.0.5 port 10250 (tcp) timed out: Operation now in progress", "timeout", "10.0.0.5",
     10250, "tcp", None),
    ("nc: connect to 10.0.0.5 port 10250 (tcp) failed: Connection timed out", "timeout", "10.0.0.5", 10250,
     "tcp", None),
    ("nc: connect to 10.0.0.5 port 10250 (tcp) failed: Connection refused", "refused", "10.0.0.5", 10250,
     "tcp", None),
    ("nc: connect to x.hcp.westeurope.azmk8s.io (20.1.2.3) port 9000 (tcp) failed: No route to host",
     "no_route", "x.hcp.westeurope.azmk8s.io", 9000, "tcp", "20.1.2.3"),
    ("nc: connect to 10.0.0.5 port 10250 (tcp) failed: Network is unreachable", "no_route", "10.0.0.5", 10250,
     "tcp", None),
    ("nc: connect to 10.0.0.5 port 10250 (tcp) failed: Permission denied", "unknown", "10.0.0.5", 10250, "tcp",
     None),
    ('nc: getaddrinfo for host "x.invalid" port 10250: Name or service not known', "unresolved", "x.invalid",
     10250, None, None),
    ('nc: getaddrinfo for host "x" port 443: Temporary failure in name resolution', "unresolved", "x", 443, None,
     None),
    ('nc: getaddrinfo for host "x" port https: No address associated with hostname', "unresolved", "x", None,
     None, None),
    ('nc: getaddrinfo for host "10.0.0.5" port 99999: Servname not supported for ai_socktype', "unknown",
     "10.0.0.5", 99999, None, None),
    ("nc: port number invalid: abc", "unknown", None, None, None, None),
    ("Connection to 10.0.0.5 1194 port [udp/openvpn] succeeded!", "succeeded", "10.0.0.5", 1194, "udp", None),
    ("nc: connect to 10.0.0.5 port 1194 (udp) failed: Connection refused", "refused", "10.0.0.5", 1194, "udp",
     None),
]


@pytest.mark.parametrize("case", LINE_CASES, ids=[c[0][:60] for c in LINE_CASES])
def test_single_lines(case: tuple[str, str, str | None, int | None, str | None, str | None]) -> None:
    line, *expected = case
    result = parse_netcat(f"{line}\n")
    assert [result.outcome, result.host, result.port, result.protocol, result.address] == expected
    assert result.line == line
    assert result.line_number == 1


def test_udp_success_is_flagged_as_inconclusive() -> None:
    udp = parse_netcat("Connection to 10.0.0.5 1194 port [udp/openvpn] succeeded!")
    tcp = parse_netcat("Connection to 10.0.0.5 10250 port [tcp/*] succeeded!")
    assert udp.note is not None
    assert "ICMP" in udp.note
    assert not udp.conclusive
    assert tcp.conclusive
    assert tcp.note is None


def test_local_refusal_is_unknown_with_an_explanation() -> None:
    result = parse_netcat("nc: connect to 10.0.0.5 port 443 (tcp) failed: Operation not permitted")
    assert result.outcome == "unknown"
    assert result.detail is not None
    assert "OUTPUT" in result.detail


def test_attempts_on_several_addresses_are_one_target() -> None:
    text = ("$ nc -zv -w 2 localhost 10250\n"
            "nc: connect to localhost (::1) port 10250 (tcp) failed: Connection refused\n"
            "Connection to localhost (127.0.0.1) 10250 port [tcp/*] succeeded!\n"
            "nc: connect to 10.0.0.5 port 10250 (tcp) timed out: Operation now in progress\n"
            "nc: connect to 10.0.0.5 port 10250 (tcp) timed out: Operation now in progress\n")
    first, second = parse_netcat_all(text)
    assert first.outcome == "succeeded"
    assert first.address == "127.0.0.1"
    assert first.line_number == 3
    assert len(first.attempts) == 2
    assert second.outcome == "timeout"
    assert second.line_number == 5
    assert len(second.attempts) == 2


def test_a_success_ends_the_target_so_a_repeat_run_is_a_new_result() -> None:
    text = ("Connection to 10.0.0.5 10250 port [tcp/*] succeeded!\n"
            "nc: connect to 10.0.0.5 port 10250 (tcp) failed: Connection refused\n")
    assert [r.outcome for r in parse_netcat_all(text)] == ["succeeded", "refused"]
    with pytest.raises(ParseError) as caught:
        parse_netcat(text)
    assert caught.value.line == 2


def test_run_command_envelope_and_crlf_are_tolerated() -> None:
    text = ("Enable succeeded: \r\n[stdout]\r\n\r\n[stderr]\r\n"
            "nc: connect to 10.224.0.4 port 10250 (tcp) timed out: Operation now in progress\r\n")
    result = parse_netcat(text)
    assert result.outcome == "timeout"
    assert result.line_number == 5
    assert result.line.endswith("in progress")


@pytest.mark.parametrize("text", [
    "", "\n\n", "Enable succeeded: \n[stdout]\n\n[stderr]\n", "(UNKNOWN) [10.0.0.5] 10250 (?) : Connection refused\n",
    "Ncat: Connection refused.\n", "Chain INPUT (policy ACCEPT)\n",
])
def test_text_without_any_nc_line_raises(text: str) -> None:
    with pytest.raises(ParseError) as caught:
        parse_netcat_all(text)
    assert caught.value.line >= 1


def test_parse_error_points_at_first_content_line() -> None:
    with pytest.raises(ParseError) as caught:
        parse_netcat("\n\nhello\n")
    assert caught.value.line == 3
    assert caught.value.got == "hello"


# --- kernel tests: the real nc ----------------------------------------------------------------------


def _nc(host: Host, *args: str, timeout: float = 15) -> subprocess.CompletedProcess[str]:
    """nc inside `host`'s namespace; nc writes its verdict lines to stderr."""
    return host.exec("nc", *args, check=False, timeout=timeout, input_text="")


def _record(name: str, outcome: str, done: subprocess.CompletedProcess[str]) -> str:
    text = done.stdout + done.stderr
    if os.environ.get("NC_FIXTURES_UPDATE") == "1":
        FIXTURES.mkdir(parents=True, exist_ok=True)
        (FIXTURES / f"{outcome}__{name}.txt").write_text(text)
    return text


def _assert_outcome(text: str, outcome: str, host: str, port: int, proto: str = "tcp") -> NetcatResult:
    result = parse_netcat(text)
    assert result.outcome == outcome, text
    assert (result.host, result.port, result.protocol) == (host, port, proto)
    return result


@pytest.fixture
def pair() -> Iterator[tuple[Host, Host]]:
    require_netns("nc", "iptables", "unshare")
    with host_pair(OCTET) as hosts:
        yield hosts


@contextmanager
def lone_namespace() -> Iterator[Host]:
    """A namespace with only loopback: no packet can leave it, so no DNS query reaches any resolver."""
    require_netns("nc", "unshare")
    name = f"nclone{uuid.uuid4().hex[:6]}"
    run(["ip", "netns", "add", name])
    try:
        run(["ip", "-n", name, "link", "set", "lo", "up"])
        yield Host(name, "127.0.0.1", "lo")
    finally:
        run(["ip", "netns", "del", name], check=False)


def _in_private_mounts(host: Host, binds: dict[str, str], *cmd: str) -> subprocess.CompletedProcess[str]:
    """Run `cmd` in `host`'s netns with files bind-mounted over system ones (private mount namespace)."""
    with tempfile.TemporaryDirectory(prefix="nc-test-") as tmp:
        script = ["set -e"]
        for index, (target, content) in enumerate(binds.items()):
            source = Path(tmp) / f"bind{index}"
            source.write_text(content)
            script.append(f"mount --bind {source} {target}")
        script.append('exec "$@"')
        return run(["ip", "netns", "exec", host.netns, "unshare", "--mount", "--propagation", "private",
                    "sh", "-c", "\n".join(script), "sh", *cmd], check=False, timeout=20)


@pytest.mark.kernel
def test_real_nc_succeeded(pair: tuple[Host, Host]) -> None:
    client, server = pair
    with tcp_listener(server):
        zero_io = _record("zv", "succeeded", _nc(client, "-z", "-v", "-w", "2", server.ip, "10250"))
        plain = _record("v_w", "succeeded", _nc(client, "-v", "-w", "1", server.ip, "10250"))
    _assert_outcome(zero_io, "succeeded", server.ip, 10250)
    _assert_outcome(plain, "succeeded", server.ip, 10250)


@pytest.mark.kernel
def test_real_nc_refused_by_closed_port_and_by_reject(pair: tuple[Host, Host]) -> None:
    client, server = pair
    closed = _record("closed_port", "refused", _nc(client, "-z", "-v", "-w", "2", server.ip, "10250"))
    _assert_outcome(closed, "refused", server.ip, 10250)
    server.exec("iptables", "-A", "INPUT", "-p", "tcp", "--dport", "10250", "-j", "REJECT",
                "--reject-with", "tcp-reset")
    with tcp_listener(server):
        rejected = _record("iptables_reject", "refused", _nc(client, "-z", "-v", "-w", "2", server.ip, "10250"))
    _assert_outcome(rejected, "refused", server.ip, 10250)


@pytest.mark.kernel
def test_real_nc_timeout_on_drop(pair: tuple[Host, Host]) -> None:
    client, server = pair
    server.exec("iptables", "-A", "INPUT", "-p", "tcp", "--dport", "10250", "-j", "DROP")
    with tcp_listener(server):
        text = _record("iptables_drop", "timeout", _nc(client, "-z", "-v", "-w", "1", server.ip, "10250"))
    result = _assert_outcome(text, "timeout", server.ip, 10250)
    assert "timed out" in result.line


@pytest.mark.kernel
def test_real_nc_no_route(pair: tuple[Host, Host]) -> None:
    client, server = pair
    server.exec("iptables", "-A", "INPUT", "-p", "tcp", "--dport", "10250", "-j", "REJECT",
                "--reject-with", "icmp-host-unreachable")
    icmp = _record("icmp_host_unreachable", "no_route", _nc(client, "-z", "-v", "-w", "2", server.ip, "10250"))
    _assert_outcome(icmp, "no_route", server.ip, 10250)
    unreachable_net = f"10.{OCTET}.0.0/16"
    client.exec("ip", "route", "add", "unreachable", unreachable_net)
    route = _record("unreachable_route", "no_route", _nc(client, "-z", "-v", "-w", "2", f"10.{OCTET}.1.1", "10250"))
    _assert_outcome(route, "no_route", f"10.{OCTET}.1.1", 10250)
    with lone_namespace() as lone:
        no_routes = _record("network_unreachable", "no_route", _nc(lone, "-z", "-v", "-w", "1", "10.9.9.9", "10250"))
    _assert_outcome(no_routes, "no_route", "10.9.9.9", 10250)


@pytest.mark.kernel
def test_real_nc_unresolved_without_any_network() -> None:
    with lone_namespace() as lone:
        # The resolver from /etc/resolv.conf is unreachable from a loopback-only namespace.
        again = _record("resolver_unreachable", "unresolved",
                        _nc(lone, "-z", "-v", "-w", "1", "kubelet-check.invalid", "10250"))
        # With name lookups limited to /etc/hosts, glibc answers "not known" without any query at all.
        files_only = _in_private_mounts(lone, {"/etc/nsswitch.conf": "hosts: files\n"},
                                        "nc", "-z", "-v", "-w", "1", "kubelet-check.invalid", "10250")
        not_known = _record("hosts_file_only", "unresolved", files_only)
    first = parse_netcat(again)
    assert first.outcome == "unresolved", again
    assert first.host == "kubelet-check.invalid"
    assert first.port == 10250
    second = parse_netcat(not_known)
    assert second.outcome == "unresolved", not_known
    assert second.detail == "Name or service not known"


@pytest.mark.kernel
def test_real_nc_port_range_gives_one_result_per_port(pair: tuple[Host, Host]) -> None:
    client, server = pair
    with tcp_listener(server):
        text = _record("port_range", "multi", _nc(client, "-z", "-v", "-w", "1", server.ip, "10249-10251"))
    results = parse_netcat_all(text)
    assert [(r.port, r.outcome) for r in results] == [(10249, "refused"), (10250, "succeeded"),
                                                      (10251, "refused")]


@pytest.mark.kernel
def test_real_nc_name_with_two_addresses_is_one_target(pair: tuple[Host, Host]) -> None:
    client, server = pair
    # getaddrinfo sorts addresses (RFC 6724 longest matching prefix): the server's own .5 comes before
    # .70 for our client at .4, so .5 refuses and nc must move on to .70.
    second_ip = f"10.250.{OCTET}.70"
    server.exec("ip", "addr", "add", f"{second_ip}/24", "dev", server.iface)
    server.exec("iptables", "-A", "INPUT", "-d", server.ip, "-p", "tcp", "-j", "REJECT",
                "--reject-with", "tcp-reset")
    hosts = f"127.0.0.1 localhost\n{second_ip} kube-node\n{server.ip} kube-node\n"
    with tcp_listener(server):
        done = _in_private_mounts(client, {"/etc/hosts": hosts, "/etc/nsswitch.conf": "hosts: files\n"},
                                  "nc", "-z", "-v", "-w", "2", "kube-node", "10250")
    text = _record("two_addresses", "succeeded", done)
    result = parse_netcat(text)
    assert result.outcome == "succeeded", text
    assert result.host == "kube-node"
    assert result.address == second_ip
    assert len(result.attempts) == 2


def _udp_listener_code() -> str:
    return ("import socket,sys\ns=socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
            "s.bind(('0.0.0.0', int(sys.argv[1]))); print('ready', flush=True)\n"
            "while True: s.recvfrom(2048)\n")


@pytest.mark.kernel
def test_real_nc_udp_success_means_only_no_icmp(pair: tuple[Host, Host]) -> None:
    client, server = pair
    listener = server.popen(sys.executable, "-c", _udp_listener_code(), "1194")
    try:
        assert listener.stdout is not None
        assert "ready" in listener.stdout.readline()
        open_port = _record("udp_listener", "succeeded", _nc(client, "-z", "-u", "-v", "-w", "1", server.ip, "1194"))
    finally:
        listener.kill()
        listener.wait(timeout=5)
    result = _assert_outcome(open_port, "succeeded", server.ip, 1194, "udp")
    assert not result.conclusive
    # Dropped UDP also "succeeds": nothing comes back, which is exactly why the note exists.
    server.exec("iptables", "-A", "INPUT", "-p", "udp", "--dport", "1194", "-j", "DROP")
    dropped = _record("udp_dropped", "succeeded", _nc(client, "-z", "-u", "-v", "-w", "1", server.ip, "1194"))
    assert parse_netcat(dropped).outcome == "succeeded"
    # A closed UDP port answers ICMP port unreachable: nc -z then prints nothing and exits 1.
    server.exec("iptables", "-F", "INPUT")
    closed = _nc(client, "-z", "-u", "-v", "-w", "1", server.ip, "1194")
    assert closed.returncode == 1
    with pytest.raises(ParseError):
        parse_netcat(closed.stdout + closed.stderr)

