"""Timer triggers: each plans its family's cycle and fans out one queue message per cluster.

Schedules come from app settings (`%SNAT_SCHEDULE%` ...), so operators retune them without a deploy.
The planning itself (discovery, the per-subscription Activity Log read, the cycle record) is
shared.monitor.pipeline.plan_cycle, which `scan` runs too.
"""

from __future__ import annotations

import logging

import azure.functions as func

from shared.functions.context import get_monitor

bp = func.Blueprint()  # type: ignore[no-untyped-call]
log = logging.getLogger(__name__)


def fan_out(family: str) -> int:
    from shared.monitor.pipeline import plan_cycle
    from shared.monitor.queues import send_checks

    monitor = get_monitor()
    plan = plan_cycle(monitor, family)
    for problem in plan.errors:
        log.error("fleet discovery: %s", problem)
    sent = send_checks(plan.messages, monitor.env, queue=monitor.queues.checks)
    log.info("fanned out %s checks", family, extra={"custom_dimensions": {
        "family": family, "clusters": sent, "cycleId": plan.cycle_id}})
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
