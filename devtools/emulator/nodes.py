"""Simulated AKS nodes for the local Azure emulator, and the executor that runs the probe on them.

A scenario declares what is true inside each node (its netfilter rules, ufw, kubelet, tunnel containers,
egress path); an executor answers the emulated run-command by running the REAL probe script against that
state. Two executors exist: the network-namespace lab (`nodelab`, real kernel, iptables, ufw and nc, needs
root) and the in-process responder (`responder`, renders the frame from the declared state; approximate
and labelled as such in every outcome's stderr). `make_executor` picks one and says which.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

log = logging.getLogger(__name__)

_BUILTIN_CHAINS = ("INPUT", "FORWARD", "OUTPUT")
_EGRESS_RE = re.compile(r"(tcp|udp)/([1-9][0-9]{0,4})")
_UFW_DEFAULTS = ("allow", "deny", "reject")


@dataclass(frozen=True)
class UfwConfig:
    """ufw as installed on a node. `rules` are ufw command tails, e.g. "deny 10250/tcp",
    "allow from 10.224.0.0/16 to any port 10250 proto tcp", applied in order."""

    enabled: bool
    default_incoming: str = "deny"
    rules: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.default_incoming not in _UFW_DEFAULTS:
            raise ValueError(f"ufw default_incoming {self.default_incoming!r} is not one of {_UFW_DEFAULTS}")


@dataclass(frozen=True)
class NodeState:
    """What is true inside one simulated node.

    `iptables_rules`: extra `-A ...` lines for the filter table (user chains they use are declared
    automatically), or a full iptables-save text (anything containing `*filter`); None = empty table.
    `ufw`: None = ufw not installed. `containers`: running containers; None = crictl absent.
    `egress_blocked`: e.g. {"tcp/443"}: dropped on the way out (as an NSG/firewall would, not on the node).
    `running`: False = deallocated/stopped VM (run-command refuses, peers see nothing).
    `exited_containers`: tunnel agents whose newest instance exited after restarts (crash-looping), as
    `crictl ps -a` shows them. `tls_inspected`: a TLS-inspecting proxy on the egress path answers the node's
    TCP 443 to the API server with a certificate from another CA and no ALPN.
    """

    name: str
    ip: str
    iptables_rules: str | None = None
    ufw: UfwConfig | None = None
    kubelet_listening: bool = True
    containers: tuple[str, ...] | None = ("konnectivity-agent",)
    egress_blocked: frozenset[str] = field(default_factory=frozenset)
    running: bool = True
    exited_containers: tuple[str, ...] = ()
    tls_inspected: bool = False

    def __post_init__(self) -> None:
        ipaddress.IPv4Address(self.ip)
        for entry in self.egress_blocked:
            if not _EGRESS_RE.fullmatch(entry):
                raise ValueError(f"node {self.name}: egress_blocked entry {entry!r} is not like 'tcp/443'")


@dataclass(frozen=True)
class ApiServerState:
    """The cluster's API server endpoint as the nodes see it: its FQDN and the address it resolves to."""

    host: str
    ip: str

    def __post_init__(self) -> None:
        ipaddress.IPv4Address(self.ip)


@dataclass(frozen=True)
class RunCommandOutcome:
    """The two streams of one run-command, before Azure cuts them to 4,096 bytes each."""

    stdout: str
    stderr: str


class NodeNotRunningError(RuntimeError):
    """Run-command on a stopped or deallocated VM: Azure refuses it (409) instead of running the script."""


class RunCommandExecutor(Protocol):
    """Runs the probe script on simulated nodes; `run` is blocking and safe to call from several threads."""

    def prepare(self, nodes: Sequence[NodeState], api: ApiServerState) -> None: ...

    def run(self, node_name: str, script: str, args: Sequence[str]) -> RunCommandOutcome: ...

    def update(self, node: NodeState) -> None: ...

    def close(self) -> None: ...


def filter_table_text(rules: str | None) -> str:
    """The node's filter table in iptables-restore form (extra `-A` lines get their chains declared)."""
    if rules is not None and "*filter" in rules:
        return rules if rules.endswith("\n") else rules + "\n"
    declared: list[str] = []
    body: list[str] = []
    for raw in (rules or "").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        words = line.split()
        if line.startswith(":"):
            declared.append(words[0][1:])
            continue
        if words[0] == "-N" and len(words) > 1:
            declared.append(words[1])
            continue
        if words[0] == "-A" and len(words) > 1:
            declared.append(words[1])
        body.append(line)
    user_chains = [c for c in dict.fromkeys(declared) if c not in _BUILTIN_CHAINS]
    header = ["*filter", *(f":{c} ACCEPT [0:0]" for c in _BUILTIN_CHAINS), *(f":{c} - [0:0]" for c in user_chains)]
    return "\n".join([*header, *body, "COMMIT"]) + "\n"


def make_executor(prefer_kernel: bool = True) -> RunCommandExecutor:
    """The netns lab when this process can build one (root + network namespaces), else the responder."""
    from devtools.emulator.responder import InProcessResponder

    if prefer_kernel:
        from devtools.emulator.nodelab import NetnsNodeLab, lab_unavailable_reason

        reason = lab_unavailable_reason()
        if reason is None:
            log.info("node emulator: network-namespace lab (real kernel, iptables, ufw and nc)")
            return NetnsNodeLab()
        log.warning("node emulator: in-process responder (no kernel; approximate): %s", reason)
    else:
        log.info("node emulator: in-process responder (no kernel; approximate), as requested")
    return InProcessResponder()
