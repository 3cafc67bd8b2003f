"""Timer triggers: each discovers the fleet and fans out one queue message per cluster.

Schedules come from app settings (`%SNAT_SCHEDULE%` ...), so operators retune them without a deploy.
"""

from __future__ import annotations

import logging
import uuid

import azure.functions as func

from shared.functions.context import get_monitor

bp = func.Blueprint()  # type: ignore[no-untyped-call]
log = logging.getLogger(__name__)


def fan_out(family: str) -> int:
    from shared.azure.collect import Collector
    from shared.monitor.queues import CheckMessage, send_checks

    monitor = get_monitor()
    members, errors = monitor.discover(Collector(monitor.clients, now=monitor.now))
    for problem in errors:
        log.error("fleet discovery: %s", problem)
    cycle = uuid.uuid4().hex
    sent = send_checks([CheckMessage(m.cluster_id, m.subscription_id, (family,), cycle) for m in members])
    log.info("fanned out %s checks", family, extra={"custom_dimensions": {"family": family, "clusters": sent,
                                                                          "cycleId": cycle}})
    return sent


@bp.timer_trigger(schedule="%SNAT_SCHEDULE%", arg_name="timer", run_on_startup=False, use_monitor=True)
def snat_timer(timer: func.TimerRequest) -> None:
    fan_out("snat")


@bp.timer_trigger(schedule="%NSG_SCHEDULE%", arg_name="timer", run_on_startup=False, use_monitor=True)
def nsg_timer(timer: func.TimerRequest) -> None:
    fan_out("nsg")


@bp.timer_trigger(schedule="%PROBE_SCHEDULE%", arg_name="timer", run_on_startup=False, use_monitor=True)
def probe_timer(timer: func.TimerRequest) -> None:
    fan_out("probe")


@bp.timer_trigger(schedule="%OUTBOX_SCHEDULE%", arg_name="timer", run_on_startup=False, use_monitor=True)
def outbox_timer(timer: func.TimerRequest) -> None:
    """Retries notifications still pending (a webhook that was down, a 429 with Retry-After)."""
    sent, failed = get_monitor().deliver_notifications()
    log.info("outbox: %d sent, %d failed", sent, failed)
