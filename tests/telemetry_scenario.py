"""Run in a fresh interpreter by tests/test_telemetry_secrets.py: the app's telemetry, captured in memory.

OpenTelemetry's global providers can be set once per process, so this runs alone:

1. the Azure Monitor exporters inside azure-monitor-opentelemetry are swapped for in-memory ones
   (everything else, instrumentations and processors included, is the library's own set-up);
2. `function_app` is imported, which runs `configure_telemetry()` exactly as the Functions host does;
   a root-logger handler stands in for the host's own log forwarding;
3. findings are reconciled on Azurite and their alerts dispatched to Slack-, Teams- and generic-shaped
   URLs on a local HTTPS receiver: first while it is down, then while it answers 500 echoing the
   request path, then 200; then once more with requests instrumentation forced on, and with code that
   logs a webhook URL and an exception quoting it;
4. every exported span, log record and metric, every root log line, every stored entity and every
   error / exception text is written as JSON to the path given as argv[1].

Traffic stays on loopback: Azurite, the receiver, and the Application Insights endpoints in the
connection string (never contacted: the exporters are in memory; statsbeat and control plane are off).
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter
from opentelemetry.sdk.metrics.export import MetricExporter, MetricExportResult, MetricsData
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

SPANS = InMemorySpanExporter()
LOGS = InMemoryLogRecordExporter()


class InMemoryMetrics(MetricExporter):
    def __init__(self) -> None:
        super().__init__()
        self.exported: list[str] = []

    def export(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any) -> MetricExportResult:
        self.exported.append(metrics_data.to_json())
        return MetricExportResult.SUCCESS

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        return None


METRICS = InMemoryMetrics()


class RootCapture(logging.Handler):
    """What the Functions host would forward: every record reaching the root logger, formatted."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        # Handlers emit the formatted record (message + formatted exception) and its extra attributes.
        extra = {k: str(v) for k, v in vars(record).items() if k not in ("msg", "args", "exc_info")}
        self.lines.append(self.format(record) + " " + json.dumps(extra))


def swap_exporters() -> None:
    import azure.monitor.opentelemetry._configure as configure
    from azure.monitor.opentelemetry import exporter

    configure.AzureMonitorTraceExporter = lambda **_: SPANS  # type: ignore[assignment,misc]
    configure.AzureMonitorMetricExporter = lambda **_: METRICS  # type: ignore[assignment,misc]
    exporter.AzureMonitorLogExporter = lambda **_: LOGS  # type: ignore[assignment,misc]


def main(out_path: str) -> None:
    from tests.https_receiver import HttpsReceiver

    root = RootCapture()
    logging.getLogger().addHandler(root)
    logging.getLogger().setLevel(logging.DEBUG)
    swap_exporters()

    with HttpsReceiver() as rx:
        os.environ["REQUESTS_CA_BUNDLE"] = rx.ca_path
        urls = {
            "SLACK_WEBHOOK_URL": rx.url(os.environ["TEST_SLACK_PATH"]),
            "TEAMS_WEBHOOK_URL": rx.url(os.environ["TEST_TEAMS_PATH"]),
            "ALERT_WEBHOOK_URL": rx.url(os.environ["TEST_GENERIC_PATH"]),
        }
        os.environ.update(urls)
        import function_app  # noqa: F401 - runs configure_telemetry() as the host does

        texts = run_alerts(rx, urls)
        from opentelemetry import trace
        from opentelemetry._logs import get_logger_provider
        from opentelemetry.metrics import get_meter_provider

        trace.get_tracer_provider().force_flush()  # type: ignore[attr-defined]
        get_logger_provider().force_flush()  # type: ignore[attr-defined]
        get_meter_provider().force_flush()  # type: ignore[attr-defined]
        received = [{"path": r.path, "signature": r.headers.get("X-Monitor-Signature", "")} for r in rx.requests]

    spans = [json.loads(s.to_json()) for s in SPANS.get_finished_spans()]
    logs = [json.loads(r.to_json()) for r in LOGS.get_finished_logs()]
    with open(out_path, "w", encoding="utf-8") as fh:
        json.dump({"spans": spans, "logs": logs, "metrics": METRICS.exported, "root": root.lines,
                   "received": received, **texts}, fh)


def run_alerts(rx: Any, urls: dict[str, str]) -> dict[str, Any]:
    from azure.data.tables import TableServiceClient

    from shared.model import CauseId, CauseResult, Evidence, Status
    from shared.notify.channels import ChannelSettingsError, channels_from_settings
    from shared.notify.delivery import deliver, new_session
    from shared.notify.message import ClusterRef
    from shared.store.lifecycle import reconcile
    from shared.store.outbox import dispatch_pending, list_outbox, senders_for
    from tests.azurite import isolated_store

    sub = "0b1f6471-1bf0-4dda-aec3-111122223333"
    cluster = ClusterRef(f"/subscriptions/{sub}/resourceGroups/rg/providers/Microsoft.ContainerService/"
                         "managedClusters/aks-t", "aks-t", sub)
    results = [CauseResult(CauseId.UFW, Status.DETECTED, "UFW blocks 10250", "UFW refuses 10250 on node-a",
                           evidence=(Evidence("node-a", "DENY IN 10250/tcp"),), subjects=("ufw: DENY 10250",)),
               CauseResult(CauseId.SNAT, Status.DETECTED, "SNAT", "failed SNAT connections")]
    channels = channels_from_settings(dict(os.environ))
    senders = senders_for(channels, session=new_session())
    errors: list[str] = []
    t0 = datetime.now(UTC)
    log = logging.getLogger("shared.tests.telemetry")
    with isolated_store(os.environ["AZURITE_CONNECTION_STRING"], channels=tuple(c.name for c in channels)) as store:
        reconcile(store, cluster, results, t0)
        rx.go_down()  # connection refused: requests' own message quotes the whole URL
        errors.append(str(dispatch_pending(store, senders, t0)))
        errors.extend(i.last_error or "" for i in list_outbox(store))
        rx.come_up()
        echo = "".join(os.environ[k] for k in ("TEST_SLACK_PATH", "TEST_TEAMS_PATH", "TEST_GENERIC_PATH"))
        rx.fail_next(6, 500, body=f"no such hook: {echo}".encode())
        dispatch_pending(store, senders, t0 + timedelta(hours=2))
        errors.extend(i.last_error or "" for i in list_outbox(store))
        dispatch_pending(store, senders, t0 + timedelta(hours=4))
        reconcile(store, cluster, [replace(results[1], status=Status.CLEAR)], t0 + timedelta(hours=5))
        dispatch_pending(store, senders, t0 + timedelta(hours=5))

        # Even if someone turns HTTP client instrumentation back on, spans must not carry the URLs.
        from opentelemetry.instrumentation.requests import RequestsInstrumentor

        RequestsInstrumentor().instrument()
        try:
            from shared.notify.message import from_json

            payload = from_json(list_outbox(store)[0].payload)
            for channel in channels:
                errors.append(deliver(channel, payload, session=new_session()).error)
            rx.go_down()
            for channel in channels:
                errors.append(deliver(channel, payload, session=new_session()).error)
            rx.come_up()
        finally:
            RequestsInstrumentor().uninstrument()

        # Code that carelessly logs a URL, or an exception quoting one.
        log.warning("posting to %s failed", urls["SLACK_WEBHOOK_URL"])
        try:
            secret = os.environ["ALERT_WEBHOOK_SECRET"]
            raise RuntimeError(f"cannot reach {urls['TEAMS_WEBHOOK_URL']} (secret {secret})")
        except RuntimeError:
            log.exception("delivery crashed")
        try:
            elsewhere = urls["SLACK_WEBHOOK_URL"].replace("127.0.0.1", "evil.example")
            channels_from_settings({"SLACK_WEBHOOK_URL": elsewhere})
        except ChannelSettingsError as exc:
            errors.append(str(exc))
        errors.extend(repr(c) for c in channels)

        service = TableServiceClient.from_connection_string(os.environ["AZURITE_CONNECTION_STRING"])
        entities = [json.dumps({k: str(v) for k, v in e.items()}) for name in store.names.all()
                    for e in service.get_table_client(name).list_entities()]
    return {"errors": errors, "entities": entities}


if __name__ == "__main__":
    args: Sequence[str] = sys.argv[1:]
    main(args[0])
