"""`python -m shared analyze` as an on-call engineer runs it: real process, real exit codes."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_causes import IPTABLES_DROP_IN_CHAIN, UFW_DENY


def run_cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "shared", *args], capture_output=True, text=True, input=stdin,
                          timeout=60, check=False)


def test_iptables_drop_from_stdin_is_detected_with_exit_1() -> None:
    done = run_cli("analyze", "iptables", "-", "--json", stdin=IPTABLES_DROP_IN_CHAIN)
    assert done.returncode == 1, done.stderr
    out = json.loads(done.stdout)
    assert set(out) == {"status", "summary", "evidence", "remediation"}
    assert out["status"] == "detected"
    assert any("CUSTOM-BLOCK" in step for step in out["remediation"])


def test_ufw_file_with_source_outside_rules(tmp_path: Path) -> None:
    saved = tmp_path / "ufw.txt"
    saved.write_text(UFW_DENY)
    done = run_cli("analyze", "ufw", str(saved), "--source", "10.224.0.7", "--json")
    assert done.returncode == 1
    assert json.loads(done.stdout)["status"] == "detected"


def test_clear_exits_0_and_prints_text() -> None:
    done = run_cli("analyze", "ufw", "-", stdin="Status: inactive\n")
    assert done.returncode == 0
    assert "clear" in done.stdout


def test_port_option_changes_the_question() -> None:
    done = run_cli("analyze", "iptables", "-", "--port", "22", "--json", stdin=IPTABLES_DROP_IN_CHAIN)
    assert done.returncode == 0
    assert json.loads(done.stdout)["status"] == "clear"


def test_garbage_exits_2_naming_the_line() -> None:
    done = run_cli("analyze", "iptables", "-", stdin="*filter\n:INPUT ACCEPT [0:0]\nthis is not a rule\nCOMMIT\n")
    assert done.returncode == 2
    assert "line 3" in done.stderr
    assert done.stderr.count("\n") == 1  # one line


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("analyze", "iptables", "/nonexistent/file"), "no such file"),
        (("analyze", "iptables", "-", "--source", "10.0.0.300"), "not an IPv4 address"),
        (("analyze", "iptables", "-", "--port", "70000"), "not a TCP port"),
        (("analyze", "bogus", "-"), "invalid choice"),
        (("diagnose", "/subscriptions/not-a-guid/resourceGroups/rg/providers/Microsoft.ContainerService/"
                      "managedClusters/x"), "not a GUID"),
        (("diagnose", "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg"),
         "not a managed cluster"),
    ],
)
def test_bad_usage_exits_2_with_one_line(args: tuple[str, ...], needle: str) -> None:
    done = run_cli(*args, stdin="")
    assert done.returncode == 2
    assert needle in done.stderr


@pytest.mark.parametrize(
    ("output", "code", "status"),
    [
        ("Connection to 10.224.0.5 10250 port [tcp/*] succeeded!\n", 0, "clear"),
        ("nc: connect to 10.224.0.5 port 10250 (tcp) timed out: Operation now in progress\n", 1, "detected"),
        ("nc: connect to 10.224.0.5 port 10250 (tcp) failed: Connection refused\n", 1, "detected"),
        ('nc: getaddrinfo for host "node.invalid" port 10250: Name or service not known\n', 3, "unknown"),
    ],
)
def test_netcat_outcomes(output: str, code: int, status: str) -> None:
    done = run_cli("analyze", "nc", "-", "--json", stdin=output)
    assert done.returncode == code, done.stderr
    assert json.loads(done.stdout)["status"] == status


def test_netcat_only_considers_the_requested_port_and_dest() -> None:
    output = ("Connection to 10.224.0.5 10250 port [tcp/*] succeeded!\n"
              "nc: connect to 10.224.0.6 port 10250 (tcp) timed out: Operation now in progress\n")
    assert run_cli("analyze", "nc", "-", "--dest", "10.224.0.5", stdin=output).returncode == 0
    assert run_cli("analyze", "nc", "-", "--dest", "10.224.0.6", stdin=output).returncode == 1
    assert run_cli("analyze", "nc", "-", stdin=output).returncode == 1


FIXTURES = Path(__file__).parent / "fixtures"


@pytest.mark.parametrize("fixture", ["succeeded__udp_dropped.txt", "succeeded__udp_listener.txt"])
def test_udp_succeeded_is_unknown_never_clear(fixture: str) -> None:
    """Issue 8 item 1: nc's UDP 'succeeded' is the same for a silent drop and a listener (both recorded from
    the real kernel in tests/test_netcat.py), so it must not read as reachable."""
    done = run_cli("analyze", "nc", str(FIXTURES / "nc" / fixture), "--port", "1194", "--json")
    assert done.returncode == 3, done.stderr
    out = json.loads(done.stdout)
    assert out["status"] == "unknown"
    assert "proves nothing" in out["summary"]
    assert "ICMP" in out["summary"]


def test_iptables_drop_in_a_ufw_chain_is_detected_by_analyze_with_its_file() -> None:
    """Without a `ufw status` next to it, a drop in ufw-before-input cannot be left to the UFW cause."""
    dump = ("*filter\n:INPUT DROP [0:0]\n:ufw-before-input - [0:0]\n-A INPUT -j ufw-before-input\n"
            "-A ufw-before-input -p tcp -m tcp --dport 10250 -j DROP\nCOMMIT\n")
    done = run_cli("analyze", "iptables", "-", "--json", stdin=dump)
    assert done.returncode == 1, done.stderr
    out = json.loads(done.stdout)
    assert out["status"] == "detected"
    assert "/etc/ufw/before.rules" in out["summary"]
    assert any("ufw reload" in step for step in out["remediation"])
