"""Every log record made while checking a cluster carries `cluster_id` (and `cause_id` inside a cause).

A record factory adds them from context variables, so library code logs plainly and still ends up
searchable per cluster and cause in Application Insights (OpenTelemetry exports extra record attributes).
Worker threads get the caller's context through `run_in_context`.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

T = TypeVar("T")
cluster_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("cluster_id", default=None)
cause_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("cause_id", default=None)
_installed = False


@contextmanager
def log_context(*, cluster_id: str | None = None, cause_id: str | None = None) -> Iterator[None]:
    tokens = []
    if cluster_id is not None:
        tokens.append((cluster_id_var, cluster_id_var.set(cluster_id)))
    if cause_id is not None:
        tokens.append((cause_id_var, cause_id_var.set(cause_id)))
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


def run_in_context(function: Callable[..., T]) -> Callable[..., T]:
    """Wrap a callable for a thread pool so it sees the submitting thread's cluster/cause context."""
    context = contextvars.copy_context()

    def wrapped(*args: Any, **kwargs: Any) -> T:
        # A Context can be entered by one thread at a time: each call runs in its own copy.
        return context.copy().run(function, *args, **kwargs)

    return wrapped


def install() -> None:
    """Idempotent: add cluster_id / cause_id to every LogRecord created from now on."""
    global _installed
    if _installed:
        return
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        if cluster_id_var.get() is not None and not hasattr(record, "cluster_id"):
            record.cluster_id = cluster_id_var.get()
        if cause_id_var.get() is not None and not hasattr(record, "cause_id"):
            record.cause_id = cause_id_var.get()
        return record

    logging.setLogRecordFactory(factory)
    _installed = True
