"""ARM resource ids: strict parsing, because a malformed id must be a one-line usage error, not a 404."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_RG = re.compile(r"^[-\w._()]{1,90}$")
_NAME = re.compile(r"^[A-Za-z0-9][-A-Za-z0-9_]{0,62}$")


def is_guid(value: str) -> bool:
    """Subscription ids are GUIDs; anything else is a typo worth naming before any call is made."""
    return bool(_GUID.fullmatch(value))


class InvalidResourceId(ValueError):
    pass


@dataclass(frozen=True)
class ClusterRef:
    """The one cluster reference (issue 9): what `parse_cluster_id` returns and what findings and
    notifications carry (`shared.notify.message.ClusterRef` is this class). The ARM id is the key;
    name and subscription are for people; the resource group is known when the id was parsed."""

    id: str
    name: str
    subscription_id: str
    resource_group: str = field(default="", compare=False)

    @classmethod
    def of(cls, subscription_id: str, resource_group: str, name: str) -> ClusterRef:
        return cls(
            f"/subscriptions/{subscription_id}/resourceGroups/{resource_group}"
            f"/providers/Microsoft.ContainerService/managedClusters/{name}",
            name, subscription_id, resource_group,
        )


_CLUSTER_ID = re.compile(
    r"/?subscriptions/(?P<sub>[^/]+)/resourcegroups/(?P<rg>[^/]+)/providers/microsoft\.containerservice"
    r"/managedclusters/(?P<name>[^/]+)",
    re.IGNORECASE,
)


def parse_cluster_id(value: str) -> ClusterRef:
    """Accepts any casing of the segment names (AKS itself returns `resourcegroups`).

    The whole text must be the id (`fullmatch`, no stripping): a trailing newline pasted from a file or
    junk after the name would otherwise be carried into every ARM call and the findings' keys.
    """
    matched = _CLUSTER_ID.fullmatch(value)
    if matched is None:
        raise InvalidResourceId(
            f"not a managed cluster resource id: {value!r} (expected /subscriptions/<guid>/resourceGroups/<rg>"
            "/providers/Microsoft.ContainerService/managedClusters/<name>)"
        )
    subscription, group, name = matched["sub"], matched["rg"], matched["name"]
    if not is_guid(subscription):
        raise InvalidResourceId(f"subscription id is not a GUID: {subscription!r}")
    if not _RG.fullmatch(group) or group.endswith("."):
        raise InvalidResourceId(f"invalid resource group name: {group!r}")
    if not _NAME.fullmatch(name):
        raise InvalidResourceId(f"invalid cluster name: {name!r}")
    return ClusterRef.of(subscription.lower(), group, name)


def segment(resource_id: str, key: str) -> str | None:
    """The value after `key` in an ARM id (case-insensitive), e.g. segment(id, 'resourceGroups')."""
    parts = resource_id.strip("/").split("/")
    for i, part in enumerate(parts[:-1]):
        if part.lower() == key.lower():
            return parts[i + 1]
    return None


def last_name(resource_id: str) -> str:
    return resource_id.rstrip("/").rsplit("/", 1)[-1]


def parent_id(resource_id: str, levels: int = 1) -> str:
    parts = resource_id.rstrip("/").split("/")
    return "/".join(parts[: len(parts) - 2 * levels])


def norm(resource_id: str | None) -> str:
    """ARM ids are case-insensitive; compare them lower-cased."""
    return (resource_id or "").lower()
