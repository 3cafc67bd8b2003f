"""The Storage queues that fan a cycle out to one worker invocation per cluster and check family.

Messages are base64 text, which is what the Functions queue trigger decodes by default
(`messageEncoding` in host.json), so a message written here is read there unchanged.

A check message may carry the cluster as the timer's list call returned it (`cluster`), so the worker
does not GET it again; the worker accepts it only when its id is the message's cluster id, and falls
back to a GET when it is absent (older messages, or a cluster too large to fit a queue message).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

CHECK_QUEUE = "tunnelmon-cluster-checks"
DIAGNOSE_QUEUE = "tunnelmon-diagnose-requests"
POISON_SUFFIX = "-poison"
QUEUES = (CHECK_QUEUE, DIAGNOSE_QUEUE)
_ID = re.compile(r"^[A-Za-z0-9]{1,64}$")
_QUEUE_NAME = re.compile(r"^[a-z0-9](?!.*--)[a-z0-9-]{1,61}[a-z0-9]$")
MAX_EMBEDDED_CLUSTER = 40_000  # characters of cluster JSON carried in a message (queue limit: 64 KiB base64)


@dataclass(frozen=True)
class QueueNames:
    """The queues the timers and the HTTP API write to; the triggers listen on the defaults.

    `namespaced` gives tests a private set on a shared Azurite, like `TableNames.namespaced`.
    """

    checks: str = CHECK_QUEUE
    diagnose: str = DIAGNOSE_QUEUE

    def __post_init__(self) -> None:
        for f in fields(self):
            if not _QUEUE_NAME.match(getattr(self, f.name)):
                raise ValueError(f"invalid Azure queue name {getattr(self, f.name)!r}")

    def namespaced(self, tag: str) -> QueueNames:
        return QueueNames(**{f.name: f"{getattr(self, f.name)}-{tag.lower()}" for f in fields(self)})


DEFAULT_QUEUES = QueueNames()


class BadMessage(ValueError):
    """A queue message we did not write (or a corrupted one): rejected, never acted upon."""


@dataclass(frozen=True)
class CheckMessage:
    cluster_id: str
    subscription_id: str
    families: tuple[str, ...]
    cycle_id: str
    cluster: dict[str, Any] | None = None  # the list answer, when it fits

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"clusterId": self.cluster_id, "subscriptionId": self.subscription_id,
                               "families": list(self.families), "cycleId": self.cycle_id}
        if self.cluster is not None and len(json.dumps(self.cluster)) <= MAX_EMBEDDED_CLUSTER:
            out["cluster"] = self.cluster
        return out


def _json_object(text: str) -> dict[str, Any]:
    """The message body as a JSON object, or BadMessage saying why not."""
    try:
        data = json.loads(text)
    except ValueError:
        raise BadMessage("not JSON") from None
    if not isinstance(data, dict):
        raise BadMessage("not a JSON object")
    return data


def parse_check_message(text: str) -> CheckMessage:
    from shared.azure.ids import InvalidResourceId, parse_cluster_id
    from shared.monitor.families import FAMILIES

    data = _json_object(text)
    try:
        ref = parse_cluster_id(str(data.get("clusterId", "")))
    except InvalidResourceId as exc:
        raise BadMessage(str(exc)) from None
    families = data.get("families")
    if not isinstance(families, list) or not families or any(f not in FAMILIES for f in families):
        raise BadMessage(f"families must be a non-empty list from {sorted(FAMILIES)}")
    cycle = str(data.get("cycleId", ""))
    if not _ID.match(cycle):
        raise BadMessage("cycleId must be 1-64 letters or digits")
    cluster = data.get("cluster")
    if cluster is not None and (not isinstance(cluster, dict)
                                or str(cluster.get("id", "")).lower() != str(data["clusterId"]).lower()):
        cluster = None  # not the message's cluster: ignore it and GET the cluster instead
    return CheckMessage(str(data["clusterId"]), ref.subscription_id, tuple(families), cycle, cluster)


@dataclass(frozen=True)
class DiagnoseMessage:
    request_id: str
    cluster_id: str


def parse_diagnose_message(text: str) -> DiagnoseMessage:
    """`{"requestId", "clusterId"}` as the HTTP API wrote it; anything else is a BadMessage."""
    data = _json_object(text)
    request_id, cluster_id = str(data.get("requestId", "")), str(data.get("clusterId", ""))
    if not _ID.match(request_id):
        raise BadMessage("requestId must be 1-64 letters or digits")
    return DiagnoseMessage(request_id, cluster_id)


def queue_client(name: str, env: Mapping[str, str] | None = None) -> Any:
    from azure.storage.queue import TextBase64DecodePolicy, TextBase64EncodePolicy

    from shared.store.connection import queue_service, settings_from_env

    service = queue_service(settings_from_env(env if env is not None else os.environ))
    client = service.get_queue_client(name, message_encode_policy=TextBase64EncodePolicy(),
                                      message_decode_policy=TextBase64DecodePolicy())
    try:
        client.create_queue()
    except Exception as exc:  # QueueAlreadyExists is the normal case
        if getattr(exc, "error_code", None) not in ("QueueAlreadyExists",) and "AlreadyExists" not in str(exc):
            raise
    return client


def send_message(name: str, payload: Mapping[str, Any], env: Mapping[str, str] | None = None) -> None:
    queue_client(name, env).send_message(json.dumps(payload))


def send_checks(messages: Sequence[CheckMessage], env: Mapping[str, str] | None = None, *,
                queue: str = CHECK_QUEUE) -> int:
    client = queue_client(queue, env)
    for message in messages:
        client.send_message(json.dumps(message.to_json()))
    return len(messages)
