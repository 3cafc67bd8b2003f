"""Log records made while checking carry the cluster id and the cause id (searchable in App Insights)."""

import logging
import threading

import pytest

from shared.causes.base import Cause, run_cause
from shared.logcontext import install, log_context, run_in_context
from shared.model import CauseId
from tests.builders import CLUSTER_ID, snapshot


def test_a_crashing_cause_logs_with_cluster_and_cause(caplog: pytest.LogCaptureFixture) -> None:
    install()

    def boom(_snapshot):  # type: ignore[no-untyped-def]
        raise RuntimeError("kaboom")

    with caplog.at_level(logging.ERROR):
        run_cause(Cause(CauseId.UFW, "t", "d", lambda s: None, boom), snapshot())
    (record,) = [r for r in caplog.records if r.getMessage() == "check crashed"]
    assert record.cluster_id == CLUSTER_ID  # type: ignore[attr-defined]
    assert record.cause_id == "ufw-blocks-10250"  # type: ignore[attr-defined]


def test_context_reaches_pool_threads_and_is_reset(caplog: pytest.LogCaptureFixture) -> None:
    install()
    log = logging.getLogger("shared.test")
    with caplog.at_level(logging.INFO):
        with log_context(cluster_id="c1"):
            task = run_in_context(lambda: log.info("from a worker"))
            workers = [threading.Thread(target=task) for _ in range(4)]  # one wrapped task, many threads
            for worker in workers:
                worker.start()
            for worker in workers:
                worker.join()
        log.info("outside")
    inside = next(r for r in caplog.records if r.getMessage() == "from a worker")
    outside = next(r for r in caplog.records if r.getMessage() == "outside")
    assert inside.cluster_id == "c1"  # type: ignore[attr-defined]
    assert not hasattr(outside, "cluster_id")
