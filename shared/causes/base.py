"""What a cause is: metadata, an applicability rule and an evaluation over a ClusterSnapshot.

Evaluation code is pure (no Azure SDK, no I/O) so it can be tested on hand-built snapshots and reused
by the offline `analyze` command. `run_cause` is the one place that turns a crash into `unknown`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from shared.logcontext import log_context
from shared.model import CauseId, CauseResult, Evidence, Status
from shared.snapshot import ClusterSnapshot

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Cause:
    id: CauseId
    title: str
    description: str
    # Returns why the cause cannot apply to this cluster, or None when it applies.
    not_applicable: Callable[[ClusterSnapshot], str | None]
    evaluate: Callable[[ClusterSnapshot], CauseResult]

    def result(
        self,
        status: Status,
        summary: str,
        *,
        evidence: tuple[Evidence, ...] = (),
        remediation: tuple[str, ...] = (),
        reason: str | None = None,
        subjects: tuple[str, ...] = (),
        affected: Mapping[str, tuple[str, ...]] | None = None,
        unchecked: Mapping[str, str] | None = None,
    ) -> CauseResult:
        return CauseResult(self.id, status, self.title, summary, evidence, remediation, reason, subjects,
                           dict(affected or {}), dict(unchecked or {}))

    def unknown(self, reason: str, *, evidence: tuple[Evidence, ...] = (),
                unchecked: Mapping[str, str] | None = None) -> CauseResult:
        return self.result(Status.UNKNOWN, f"Could not be checked: {reason}", reason=reason,
                           evidence=evidence, unchecked=unchecked)


def run_cause(cause: Cause, snapshot: ClusterSnapshot) -> CauseResult:
    """Evaluate one cause; a crash or a malformed answer becomes `unknown`, never silence or `clear`."""
    with log_context(cluster_id=snapshot.id, cause_id=str(cause.id)):
        return _run_cause(cause, snapshot)


def _run_cause(cause: Cause, snapshot: ClusterSnapshot) -> CauseResult:
    if snapshot.unsupported_reason:
        return cause.unknown(snapshot.unsupported_reason)
    try:
        why_not = cause.not_applicable(snapshot)
        if why_not is not None:
            return cause.result(Status.NOT_APPLICABLE, why_not)
        result = cause.evaluate(snapshot)
    except Exception as exc:  # a broken check must still answer
        log.exception("check crashed")
        return cause.unknown(f"the check failed: {type(exc).__name__}: {exc}")
    if not isinstance(result, CauseResult) or result.id is not cause.id:
        return cause.unknown("the check returned no result for this cause")
    return result
