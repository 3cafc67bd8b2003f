"""Queue triggers: one cluster and check family per message; every failure ends in a stored, visible state.

A check message that keeps failing is moved by the host to `<queue>-poison` after maxDequeueCount
(host.json); its poison handler records the failure on the cluster (causes `unknown` with the reason in
/api/clusters, a `failed` completion row for the cycle in /api/health). A diagnose request ends `done` or
`failed` with its reason whatever goes wrong, and its poison handler marks it `failed` if even that could
not be stored.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from typing import TypeVar

import azure.functions as func

from shared.functions.context import get_monitor
from shared.monitor.queues import CHECK_QUEUE, DIAGNOSE_QUEUE, POISON_SUFFIX

bp = func.Blueprint()  # type: ignore[no-untyped-call]
log = logging.getLogger(__name__)


T = TypeVar("T")


def _parsed(msg: func.QueueMessage, parse: Callable[[str], T], what: str) -> T | None:
    """The message parsed, or None after logging why it is dropped (a malformed message is never retried)."""
    from shared.monitor.queues import BadMessage

    try:
        return parse(msg.get_body().decode("utf-8", errors="replace"))
    except BadMessage as exc:
        log.error("dropping a malformed %s message %s: %s", what, msg.id, exc)
        return None


def _poison_reason(msg: func.QueueMessage, what: str, where: str) -> str:
    return (f"the {what} kept failing ({msg.dequeue_count or 'several'} attempts) and was moved to the poison "
            f"queue; see the function logs{where}")


@bp.queue_trigger(arg_name="msg", queue_name=CHECK_QUEUE, connection="AzureWebJobsStorage")
def cluster_check_worker(msg: func.QueueMessage) -> None:
    from shared.monitor.pipeline import run_check
    from shared.monitor.queues import parse_check_message

    message = _parsed(msg, parse_check_message, "check")
    if message is None:
        return
    monitor = get_monitor()
    attempt = f"{msg.id or 'local'}-{msg.dequeue_count or 0}-{uuid.uuid4().hex[:8]}"
    outcome = run_check(monitor, message, attempt=attempt)
    monitor.deliver_notifications()
    log.info("checked cluster", extra={"custom_dimensions": {
        "cluster_id": message.cluster_id, "families": ",".join(message.families), "cycleId": message.cycle_id,
        "verdict": outcome.report["verdict"], "opened": outcome.opened, "resolved": outcome.resolved}})


@bp.queue_trigger(arg_name="msg", queue_name=CHECK_QUEUE + POISON_SUFFIX, connection="AzureWebJobsStorage")
def cluster_check_poison(msg: func.QueueMessage) -> None:
    from shared.monitor.pipeline import record_failure_safely
    from shared.monitor.queues import parse_check_message

    message = _parsed(msg, parse_check_message, "poisoned check")
    if message is None:
        return
    record_failure_safely(get_monitor(), message, _poison_reason(msg, "check", " for this cluster"))


@bp.queue_trigger(arg_name="msg", queue_name=DIAGNOSE_QUEUE, connection="AzureWebJobsStorage")
def diagnose_worker(msg: func.QueueMessage) -> None:
    """Runs an on-demand diagnosis with node probes, outside the 230 s HTTP limit; always ends done/failed."""
    from shared.diagnose import diagnose
    from shared.monitor.pipeline import PROBE_BUDGET_S
    from shared.monitor.queues import parse_diagnose_message
    from shared.store.checkpoints import TableRunCommandLedger
    from shared.store.status import save_diagnosis

    request = _parsed(msg, parse_diagnose_message, "diagnose")
    if request is None:
        return
    monitor = get_monitor()
    attempt = f"diagnose-{request.request_id}-{uuid.uuid4().hex}"  # unique per delivery: msg.id is not
    try:
        result = diagnose(request.cluster_id, settings=monitor.settings, clients=monitor.clients, probes=True,
                          budget_s=PROBE_BUDGET_S, ledger=TableRunCommandLedger(monitor.store, attempt))
    except Exception as exc:  # any failure is the request's answer, never a request pending forever
        log.warning("diagnosis %s failed: %s", request.request_id, type(exc).__name__)
        save_diagnosis(monitor.store, request.request_id, request.cluster_id, "failed",
                       {"error": {"message": failure_message(exc)}})
        return
    save_diagnosis(monitor.store, request.request_id, request.cluster_id, "done", result.report)


@bp.queue_trigger(arg_name="msg", queue_name=DIAGNOSE_QUEUE + POISON_SUFFIX, connection="AzureWebJobsStorage")
def diagnose_poison(msg: func.QueueMessage) -> None:
    """The worker could not even store its answer (storage down?) five times: record `failed` now."""
    from shared.monitor.queues import parse_diagnose_message
    from shared.store.status import save_diagnosis

    request = _parsed(msg, parse_diagnose_message, "poisoned diagnose")
    if request is None:
        return
    save_diagnosis(get_monitor().store, request.request_id, request.cluster_id, "failed",
                   {"error": {"message": _poison_reason(msg, "diagnosis", "")}})


def failure_message(exc: BaseException) -> str:
    """One line for the stored request: what failed, without stack traces (never secrets: ARM errors only)."""
    from shared.azure.collect import CollectionError
    from shared.azure.ids import InvalidResourceId

    text = str(exc).splitlines()[0] if str(exc) else ""
    if isinstance(exc, InvalidResourceId | CollectionError):
        return text
    return f"the diagnosis failed: {type(exc).__name__}: {text}"[:1000]
