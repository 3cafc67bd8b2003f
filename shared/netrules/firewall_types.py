"""Azure Firewall rules as the evaluator sees them: classic rule collections and Firewall Policy alike.

Both forms flatten into one `FirewallRule` per rule, carrying everything Azure orders by: the policy
layer (a parent/base policy's rules are processed before its child's), the rule collection group's
priority, the rule collection's priority and the kind (DNAT, then network, then application, whatever
the priorities say). Keeping them flat and typed lets the same pure evaluator judge a classic firewall,
a policy with a parent, and the simple reference implementation the property tests compare it with.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

RuleKind = Literal["network", "application", "nat"]


@dataclass(frozen=True)
class FirewallRule:
    """One network, application or DNAT rule, flattened with its collection's priority and action.

    The first eleven fields keep the order of the classic-only type this replaces, so older callers
    that build rules positionally still work.
    """

    collection: str
    collection_priority: int
    action: str  # Allow | Deny (DNAT collections: Dnat)
    name: str
    kind: str  # "network" | "application" | "nat"
    protocols: tuple[str, ...]  # network: TCP/UDP/ICMP/Any; application: "Https:443", "Http:80", "Mssql:1433"
    source_addresses: tuple[str, ...] = ("*",)  # converters pass () when the rule names only IP groups
    destination_addresses: tuple[str, ...] = ()  # IPs, CIDRs, ranges, `*` or service tags (AzureCloud.eastus)
    destination_fqdns: tuple[str, ...] = ()  # network rule FQDNs or application rule target FQDNs
    destination_ports: tuple[str, ...] = ()
    fqdn_tags: tuple[str, ...] = ()
    source_ip_groups: tuple[str, ...] = ()  # IP group ids (resolved through Firewall.ip_groups)
    destination_ip_groups: tuple[str, ...] = ()
    web_categories: tuple[str, ...] = ()  # application rules: the category of a host is not known here
    target_urls: tuple[str, ...] = ()  # Premium application rules (host/path, needs TLS inspection)
    terminate_tls: bool = False  # Premium TLS inspection on this application rule
    # Ordering beyond the collection: 0 = the top-most parent policy (processed first); classic rules are 0.
    layer: int = 0
    group: str = ""  # rule collection group name (policies only)
    group_priority: int = 0
    # What to fix when this rule decides: the classic collection id or the policy's rule collection group id.
    collection_id: str = ""
    policy_id: str = ""  # the policy that holds the rule ("" for classic rules)


@dataclass(frozen=True)
class Firewall:
    """An Azure Firewall with every rule that applies to it, in whichever form it was configured.

    `ip_groups` maps an IP group id (lower case) to its addresses; `unreadable` maps a piece that could
    not be read (an IP group, a rule collection group) to why, so a rule depending on it is undecidable
    rather than silently skipped. `policy_chain` lists the attached policy and its parents, child first.
    """

    id: str
    private_ip: str
    rules: tuple[FirewallRule, ...] = ()
    # Public IP resources of its IP configurations: the cluster's egress IPs under userDefinedRouting.
    public_ip_ids: tuple[str, ...] = ()
    policy_id: str | None = None
    policy_chain: tuple[str, ...] = ()
    threat_intel_mode: str = "Alert"  # Off | Alert | Deny
    dns_proxy: bool = False  # network rules may use FQDNs only through the firewall's DNS proxy
    ip_groups: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    unreadable: Mapping[str, str] = field(default_factory=dict)
    sku_tier: str = ""
    name: str = ""

    @property
    def display_name(self) -> str:
        return self.name or self.id.rstrip("/").rsplit("/", 1)[-1]
