"""Typed NSG and AVNM rule data, shared by collection (ARM -> these) and the pure NSG evaluator.

Values keep Azure's spelling ("Inbound", "Allow", "Tcp", "VirtualNetwork") so that a rule read from ARM
and a rule written by hand in a test look the same.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

Direction = Literal["Inbound", "Outbound"]


@dataclass(frozen=True)
class SecurityRule:
    """One NSG security rule; `*_prefixes` merge Azure's singular and plural address properties."""

    name: str
    priority: int
    direction: Direction
    access: str  # "Allow" | "Deny"
    protocol: str  # "Tcp" | "Udp" | "Icmp" | "Esp" | "Ah" | "*"
    source_prefixes: tuple[str, ...] = ("*",)
    source_ports: tuple[str, ...] = ("*",)
    destination_prefixes: tuple[str, ...] = ("*",)
    destination_ports: tuple[str, ...] = ("*",)
    source_asgs: tuple[str, ...] = ()  # application security group ids (any case)
    destination_asgs: tuple[str, ...] = ()
    id: str = ""
    default: bool = False


@dataclass(frozen=True)
class NetworkSecurityGroup:
    """An NSG's custom rules. Azure's six default rules are implied and added by the evaluator."""

    id: str
    name: str
    rules: tuple[SecurityRule, ...] = ()


@dataclass(frozen=True)
class AdminRule:
    """An Azure Virtual Network Manager security admin rule (evaluated before any NSG).

    `sources`/`destinations` hold IP prefixes or service tags. Access `AlwaysAllow` ends evaluation with
    allow (NSGs are skipped); `Allow` lets the NSGs decide; `Deny` ends with deny.
    """

    name: str
    priority: int
    direction: Direction
    access: str  # "Allow" | "Deny" | "AlwaysAllow"
    protocol: str
    sources: tuple[str, ...] = ("*",)
    destinations: tuple[str, ...] = ("*",)
    source_ports: tuple[str, ...] = ("*",)
    destination_ports: tuple[str, ...] = ("*",)
    id: str = ""


@dataclass(frozen=True)
class AddressContext:
    """What service tags and ASGs mean for one cluster.

    `vnet_prefixes` is the VNet address space plus peered prefixes (the VirtualNetwork tag);
    `asg_members` maps an ASG id (lower case) to the IPs of the NICs that belong to it.
    """

    vnet_prefixes: tuple[str, ...] = ()
    asg_members: Mapping[str, frozenset[str]] = field(default_factory=dict)


@dataclass(frozen=True)
class Flow:
    """One new connection attempt as NSGs see it."""

    direction: Direction
    protocol: str  # "Tcp" | "Udp" | "Icmp" | "Esp" | "Ah"
    source_ip: str
    source_port: int
    destination_ip: str
    destination_port: int


@dataclass(frozen=True)
class RuleDecision:
    """The rule that decided a flow inside one NSG (or the AVNM admin layer)."""

    container_id: str  # NSG id, or "avnm" for security admin rules
    container_name: str
    rule_name: str
    rule_id: str
    priority: int
    access: str


@dataclass(frozen=True)
class PathDecision:
    """Verdict for a flow across AVNM + the NSGs on its path.

    `allowed` is None when it could not be decided (an unknown service tag, say); `reason` says why.
    `decisions` lists, in evaluation order, the deciding rule in each layer that was reached.
    """

    allowed: bool | None
    decisions: tuple[RuleDecision, ...] = ()
    reason: str | None = None

    @property
    def blocking(self) -> RuleDecision | None:
        """The decision that denied the flow, if it was denied."""
        if self.allowed is False and self.decisions:
            return self.decisions[-1]
        return None
