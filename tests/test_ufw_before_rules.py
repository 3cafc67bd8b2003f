"""Issue 8 item 3 on the real kernel: a DROP that UFW loads from /etc/ufw/before.rules is invisible to
`ufw status verbose`. The real ufw (sandboxed, tests/ufw_sandbox.py) loads it into a server namespace; the
kernel must time the kubelet port out; and from the same captured `ufw status verbose` and iptables rules
neither cause may read clear: iptables-blocks-10250 is detected naming the chain, the rule and before.rules.
The control (the same node without the line, after `ufw reload`) reads clear for both, so the test can fail.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from devtools.emulator.responder import reachable_filter_rules
from shared.causes import iptables_blocks_10250 as iptables_cause
from shared.causes import ufw_blocks_10250 as ufw_cause
from shared.causes.base import run_cause
from shared.model import CauseResult, Status
from shared.netrules.nsg_types import AddressContext
from shared.snapshot import Node, NodeProbe
from tests.builders import SUBNET, snapshot
from tests.netns_lab import Host, host_pair, require_netns, tcp_connect, tcp_listener
from tests.ufw_sandbox import UfwSandbox, ufw_sandbox, ufw_unavailable_reason

pytestmark = pytest.mark.kernel

OCTET = 63
HIDDEN_DROP = "-A ufw-before-input -p tcp --dport 10250 -j DROP"


@pytest.fixture(scope="module")
def node() -> Iterator[tuple[Host, Host, UfwSandbox]]:
    require_netns("ufw", "iptables", "iptables-save", "unshare")
    if (reason := ufw_unavailable_reason()) is not None:
        pytest.skip(f"kernel test skipped: {reason}")
    with host_pair(OCTET) as (client, server), tcp_listener(server), ufw_sandbox(server) as box:
        box.reset()
        box.check(["default", "deny", "incoming"], ["allow", "10250/tcp"], ["--force", "enable"])
        yield client, server, box


def _before_rules(box: UfwSandbox) -> Path:
    return box.root / "etc_ufw" / "before.rules"


def _set_hidden_drop(box: UfwSandbox, present: bool) -> None:
    path = _before_rules(box)
    lines = [line for line in path.read_text().splitlines() if line != HIDDEN_DROP]
    if present:
        at = lines.index("# End required lines") + 1
        lines.insert(at, HIDDEN_DROP)
    path.write_text("\n".join(lines) + "\n")
    box.check(["reload"])


def _causes(client: Host, server: Host, box: UfwSandbox) -> tuple[CauseResult, CauseResult, str]:
    """Both causes on what a probe of `server` captures: `ufw status verbose` and the INPUT-reachable rules."""
    status = box.check(["status", "verbose"])[0].output
    saved = server.exec("iptables-save", "-t", "filter").stdout
    target = Node("node-server", "pool", server.ip, SUBNET, "vmss", "0")
    source = Node("node-client", "pool", client.ip, SUBNET, "vmss", "1")
    probes = {
        target.name: NodeProbe(target.name, ufw_status=status, iptables_save=reachable_filter_rules(saved),
                               containers=()),
        source.name: NodeProbe(source.name, iptables_save="*filter\n:INPUT ACCEPT [0:0]\nCOMMIT\n",
                               containers=("konnectivity-agent",)),
    }
    snap = replace(snapshot(), nodes=(target, source), probes=probes, probes_mode="all",
                   address_context=AddressContext(vnet_prefixes=(f"10.250.{OCTET}.0/24",)))
    return run_cause(ufw_cause.CAUSE, snap), run_cause(iptables_cause.CAUSE, snap), status


def test_before_rules_drop_is_never_clear_and_iptables_names_it(node: tuple[Host, Host, UfwSandbox]) -> None:
    client, server, box = node
    _set_hidden_drop(box, present=True)
    assert tcp_connect(client, server.ip, 10250) == "timeout"  # the kernel drops it
    ufw_result, iptables_result, status = _causes(client, server, box)
    assert "10250/tcp" in status
    assert "ALLOW IN" in status  # `ufw status` only shows the allow
    assert "before" not in status

    assert ufw_result.status is not Status.CLEAR
    assert iptables_result.status is Status.DETECTED
    evidence = " ".join(e.detail for e in iptables_result.evidence if e.resource == "node-server")
    assert "ufw-before-input" in evidence
    assert "--dport 10250 -j DROP" in evidence
    assert "/etc/ufw/before.rules" in evidence
    assert iptables_result.subjects == ("iptables: -A ufw-before-input -p tcp -m tcp --dport 10250 -j DROP",)
    assert any(step.startswith("sudoedit /etc/ufw/before.rules") for step in iptables_result.remediation)
    assert any("ufw reload" in step for step in iptables_result.remediation)


def test_without_the_hidden_line_both_causes_are_clear(node: tuple[Host, Host, UfwSandbox]) -> None:
    client, server, box = node
    _set_hidden_drop(box, present=False)
    assert tcp_connect(client, server.ip, 10250) == "open"
    ufw_result, iptables_result, _ = _causes(client, server, box)
    assert ufw_result.status is Status.CLEAR, ufw_result
    assert iptables_result.status is Status.CLEAR, iptables_result
