"""Queue triggers: one cluster and check family per message; poison messages turn into `unknown`.

A message that keeps failing is moved by the host to `<queue>-poison` after maxDequeueCount (host.json);
its worker records the failure on the cluster so the API shows `unknown` with the reason instead of a
silent gap.
"""

from __future__ import annotations

import json
import logging

import azure.functions as func

from shared.functions.context import get_monitor
from shared.monitor.queues import CHECK_QUEUE, DIAGNOSE_QUEUE, POISON_SUFFIX

bp = func.Blueprint()  # type: ignore[no-untyped-call]
log = logging.getLogger(__name__)


@bp.queue_trigger(arg_name="msg", queue_name=CHECK_QUEUE, connection="AzureWebJobsStorage")
def cluster_check_worker(msg: func.QueueMessage) -> None:
    from shared.azure.collect import Collector
    from shared.monitor.cycle import FleetMember
    from shared.monitor.queues import BadMessage, parse_check_message

    try:
        message = parse_check_message(msg.get_body().decode("utf-8", errors="replace"))
    except BadMessage as exc:
        log.error("dropping a malformed check message %s: %s", msg.id, exc)
        return
    monitor = get_monitor()
    member = FleetMember(message.cluster_id, message.subscription_id)
    outcome = monitor.check_cluster(member, message.families, Collector(monitor.clients, now=monitor.now))
    monitor.deliver_notifications()
    log.info("checked cluster", extra={"custom_dimensions": {
        "cluster_id": message.cluster_id, "families": ",".join(message.families),
        "verdict": outcome.report["verdict"], "opened": outcome.opened, "resolved": outcome.resolved}})


@bp.queue_trigger(arg_name="msg", queue_name=CHECK_QUEUE + POISON_SUFFIX, connection="AzureWebJobsStorage")
def cluster_check_poison(msg: func.QueueMessage) -> None:
    from shared.monitor.queues import BadMessage, parse_check_message

    try:
        message = parse_check_message(msg.get_body().decode("utf-8", errors="replace"))
    except BadMessage as exc:
        log.error("poison queue: malformed message %s: %s", msg.id, exc)
        return
    reason = (f"the check kept failing ({msg.dequeue_count or 'several'} attempts) and was moved to the poison "
              "queue; see the function logs for this cluster")
    get_monitor().record_failure(message.cluster_id, message.families, reason)


@bp.queue_trigger(arg_name="msg", queue_name=DIAGNOSE_QUEUE, connection="AzureWebJobsStorage")
def diagnose_worker(msg: func.QueueMessage) -> None:
    """Runs an on-demand diagnosis with node probes, outside the 230 s HTTP limit."""
    from shared.azure.collect import CollectionError
    from shared.azure.ids import InvalidResourceId
    from shared.diagnose import diagnose
    from shared.store.status import save_diagnosis

    data = json.loads(msg.get_body().decode("utf-8", errors="replace"))
    request_id, cluster_id = str(data.get("requestId", "")), str(data.get("clusterId", ""))
    monitor = get_monitor()
    try:
        result = diagnose(cluster_id, settings=monitor.settings, clients=monitor.clients, probes=True)
    except (InvalidResourceId, CollectionError) as exc:
        save_diagnosis(monitor.store, request_id, cluster_id, "failed", {"error": {"message": str(exc)}})
        return
    save_diagnosis(monitor.store, request_id, cluster_id, "done", result.report)
