"""Every Azure Table the monitor owns, named in one place, with its key layout.

The names share a `tunnelmon` prefix because `AzureWebJobsStorage` is often an account other apps use
too. `TableNames.namespaced` gives tests (or a second deployment sharing an account) a disjoint set
without touching the production names. Key parts go through `keys.key_part` (lower-case, `/` -> `:`,
other unsafe characters `~hh`-escaped, long parts cut with a hash) and join with `|`.

findings        PK = cluster key, e.g. `subscriptions:<sub>:resourcegroups:my.rg_(1):providers:
                microsoft.containerservice:managedclusters:aks-1`
                RK = `<cause id>|<subject key>`
                A cycle reads and writes one cluster = one partition; all open findings fleet-wide is
                the filter `status eq 'open'` (properties `subscription_key`, `cause` narrow it).
finding events  PK = finding id (32 hex chars: sha256 of the cluster, cause and subject keys)
                RK = `<YYYY-MM-DDTHH:MM:SSZ>|e<episode:05d>|<event>`
                One finding's history is one partition, already in time order.
NSG snapshots   PK = `subscriptions:<sub>`, RK = NSG id key; properties nsg_id, rule_hash, seen_at.
checkpoints     PK = kind (`activitylog`, `activityevents`, `cycle`, `cyclerun`, `runcommand`, and
                `cycledone|<family>|<cycle id>`), RK = subscription id, check family, VMSS VM or cluster key
                (see shared/store/checkpoints.py for what each kind holds).
outbox          PK = channel name (`teams`, `slack`, `webhook`)
                RK = notification id (sha256 of findingId, event, lastSeen; see shared.notify.message)
                Re-queuing is a no-op and channels never share retry state.
                Pending index: PK = `~pending`, RK = `<channel>|<notification id>`, one row per pending row,
                so the dispatcher reads one partition instead of scanning the table (see outbox.py).
cluster status  PK = cluster key, RK = check family (`snat`, `nsg`, `probe`): latest report JSON (split over
                properties when long), verdict, checked_at.
diagnoses       PK = request id (32 hex), RK = "": status pending/done/failed and the report JSON.
snat samples    PK = cluster key, RK = `<YYYY-MM-DDTHH:MM:SSZ>` of the check: one compact SNAT sample per
                cluster per cycle (used/allocated ports, failed connections, threshold) for the fleet page's
                chart; rows older than SNAT_SAMPLE_RETENTION_DAYS are pruned as new ones arrive.

Times are stored as fixed-width UTC strings so that string order is time order in OData filters.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields

# Azure: 3-63 characters, alphanumeric, starting with a letter.
_TABLE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9]{2,62}$")


@dataclass(frozen=True)
class TableNames:
    # PK = cluster key, RK = "<cause id>|<subject key>": the current state of every finding.
    findings: str = "tunnelmonFindings"
    # PK = finding id, RK = "<time>|e<episode>|<event>": every transition of a finding, in order.
    finding_events: str = "tunnelmonFindingEvents"
    # PK = subscription key, RK = NSG key: rule-set hash per NSG for change detection.
    nsg_snapshots: str = "tunnelmonNsgSnapshots"
    # PK = checkpoint kind, RK = key within the kind (subscription, check family).
    checkpoints: str = "tunnelmonCheckpoints"
    # PK = channel name, RK = notification id: one delivery per (notification, channel).
    outbox: str = "tunnelmonOutbox"
    # PK = cluster key, RK = check family: the latest report per cluster and family (API, unknown-on-poison).
    cluster_status: str = "tunnelmonClusterStatus"
    # PK = request id, RK = "": on-demand diagnoses with node probes, answered through a status URL.
    diagnoses: str = "tunnelmonDiagnoses"
    # PK = cluster key, RK = check time: one compact SNAT sample per cluster per cycle (fleet page chart).
    snat_samples: str = "tunnelmonSnatSamples"

    def __post_init__(self) -> None:
        for name in self.all():
            if not _TABLE_NAME.match(name):
                raise ValueError(f"invalid Azure table name {name!r} (3-63 letters/digits, letter first)")

    def all(self) -> tuple[str, ...]:
        return tuple(getattr(self, f.name) for f in fields(self))

    def namespaced(self, tag: str) -> TableNames:
        """The same tables with `tag` appended, e.g. one private set per test."""
        return TableNames(**{f.name: getattr(self, f.name) + tag for f in fields(self)})


DEFAULT_TABLES = TableNames()
