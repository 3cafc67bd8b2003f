"""Daily housekeeping timer: the outbox is a queue, not an archive.

Delivered and dead notification rows are purged `OUTBOX_RETENTION_DAYS` after they finished, and
pending rows that predate the pending index are indexed so the dispatcher (which reads only the
index partition) finds them. The schedule is fixed (03:17 UTC daily): nothing depends on tuning it,
and a literal schedule needs no extra app setting.
"""

from __future__ import annotations

import logging
from datetime import timedelta

import azure.functions as func

from shared.functions.context import get_monitor

bp = func.Blueprint()  # type: ignore[no-untyped-call]
log = logging.getLogger(__name__)

SCHEDULE = "0 17 3 * * *"


def run_housekeeping() -> tuple[int, int]:
    """Purges finished outbox rows past retention and re-indexes stray pending ones: (purged, indexed)."""
    from shared.store.outbox import housekeeping

    monitor = get_monitor()
    report = housekeeping(monitor.store, monitor.now(),
                          timedelta(days=monitor.settings.outbox_retention_days))
    return report.purged, report.reindexed


@bp.timer_trigger(schedule=SCHEDULE, arg_name="timer", run_on_startup=False, use_monitor=True)
def outbox_housekeeping_timer(timer: func.TimerRequest) -> None:
    purged, indexed = run_housekeeping()
    log.info("outbox housekeeping: %d purged, %d indexed", purged, indexed)
