"""Terminal output for `scan`: a progress bar on stderr and a summary table on stdout."""

from __future__ import annotations

from shared.model import CAUSE_ORDER
from shared.monitor.cycle import CycleSummary

SHORT = {"detected": "DETECTED", "clear": "ok", "not_applicable": "n/a", "unknown": "?"}


def cycle_table(summary: CycleSummary) -> str:
    header = f"{'cluster':<28} {'verdict':<13}" + "".join(f" {c.split('-')[0]:<9}" for c in CAUSE_ORDER)
    lines = [header, "-" * len(header)]
    for report in sorted(summary.reports, key=lambda r: r["cluster"]["name"]):
        statuses = {c["id"]: c["status"] for c in report["causes"]}
        lines.append(f"{report['cluster']['name'][:28]:<28} {report['verdict']:<13}"
                     + "".join(f" {SHORT[statuses[str(c)]]:<9}" for c in CAUSE_ORDER))
    lines.append("")
    lines.append(f"{summary.clusters} clusters, {summary.opened} opened, {summary.resolved} resolved, "
                 f"{summary.still_open} still open, {summary.notifications_sent} notifications sent, "
                 f"{summary.arm.get('reads', 0)} ARM reads ({summary.arm.get('throttled', 0)} throttled), "
                 f"{summary.duration_s:.1f} s")
    for problem in summary.errors:
        lines.append(f"error: {problem}")
    return "\n".join(lines)
