"""The Storage queues that fan a cycle out to one worker invocation per cluster and check family.

Messages are base64 text, which is what the Functions queue trigger decodes by default
(`messageEncoding` in host.json), so a message written here is read there unchanged.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

CHECK_QUEUE = "tunnelmon-cluster-checks"
DIAGNOSE_QUEUE = "tunnelmon-diagnose-requests"
POISON_SUFFIX = "-poison"
QUEUES = (CHECK_QUEUE, DIAGNOSE_QUEUE)
_ID = re.compile(r"^[A-Za-z0-9]{1,64}$")


class BadMessage(ValueError):
    """A queue message we did not write (or a corrupted one): rejected, never acted upon."""


@dataclass(frozen=True)
class CheckMessage:
    cluster_id: str
    subscription_id: str
    families: tuple[str, ...]
    cycle_id: str

    def to_json(self) -> dict[str, Any]:
        return {"clusterId": self.cluster_id, "subscriptionId": self.subscription_id,
                "families": list(self.families), "cycleId": self.cycle_id}


def parse_check_message(text: str) -> CheckMessage:
    from shared.azure.ids import InvalidResourceId, parse_cluster_id
    from shared.monitor.cycle import FAMILIES

    try:
        data = json.loads(text)
    except ValueError:
        raise BadMessage("not JSON") from None
    if not isinstance(data, dict):
        raise BadMessage("not a JSON object")
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
    return CheckMessage(str(data["clusterId"]), ref.subscription_id, tuple(families), cycle)


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


def send_checks(messages: Sequence[CheckMessage], env: Mapping[str, str] | None = None) -> int:
    client = queue_client(CHECK_QUEUE, env)
    for message in messages:
        client.send_message(json.dumps(message.to_json()))
    return len(messages)
