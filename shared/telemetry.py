"""Logging and Application Insights: on when APPLICATIONINSIGHTS_CONNECTION_STRING is set, quiet otherwise.

Nothing secret may leave through telemetry. `configure_azure_monitor()` would by default instrument
requests / urllib / urllib3 / httpx, whose spans carry `http.url` / `url.full`: for Slack and Teams
that is the webhook credential. So those instrumentations are off (the Azure SDK one stays: ARM and
storage calls are the dependencies worth seeing), and, in case anything still records a URL, every
span and log record passes a redacting processor before any exporter (or live metrics) sees it.
Log records are also scrubbed at the Python logging level (`RedactingFilter` on the root and
`shared` handlers), which is the path the Functions host forwards to Application Insights itself.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

from shared.redaction import redact_attribute, redact_text, register_settings

# Library names as azure-monitor-opentelemetry knows them; all but the Azure SDK are switched off.
DISABLED_INSTRUMENTATIONS = ("requests", "urllib", "urllib3", "httpx", "django", "fastapi", "flask", "psycopg2")
INSTRUMENTATION_OPTIONS: dict[str, dict[str, bool]] = {name: {"enabled": False} for name in DISABLED_INSTRUMENTATIONS}

_configured = False


class RedactingFilter(logging.Filter):
    """Rewrites a record's message (and its formatted exception) without URLs, keys or signatures.

    Installed on handlers, not loggers: a logger's filter never sees records propagated from children.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: keep what we can show safely
            message = str(record.msg)
        cleaned = redact_text(message)
        if cleaned != message or record.args:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact_text(record.exc_text)
        if record.stack_info:
            record.stack_info = redact_text(record.stack_info)
        return True


_FILTER = RedactingFilter()


def install_log_redaction(*logger_names: str) -> None:
    """Adds the redacting filter to every handler of the root logger and of `logger_names` (idempotent)."""
    for name in ("", "shared", *logger_names):
        for handler in logging.getLogger(name or None).handlers:
            if _FILTER not in handler.filters:
                handler.addFilter(_FILTER)


def install_cli_logging(level: int = logging.WARNING) -> None:
    """The CLI's logging: warnings and errors on stderr, scrubbed like the Functions app's (same filter,
    same registered secrets). Without it Python's last-resort handler prints records unfiltered."""
    import sys

    register_settings(os.environ)
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        handler.setLevel(level)
        root.addHandler(handler)
    install_log_redaction()


def _redacted(attributes: Mapping[str, Any] | None) -> dict[str, Any]:
    return {key: redact_attribute(key, value) for key, value in (attributes or {}).items()}


def span_processor() -> Any:
    """A SpanProcessor that scrubs names, attributes, events and status of every span before export.

    It runs (in on_end) before the exporters' batch processor and live metrics, which read the same
    span object; attributes set at start are scrubbed in on_start too, so nothing on the span ever
    holds them.
    """
    from opentelemetry.sdk.trace import Event, ReadableSpan, Span, SpanProcessor
    from opentelemetry.trace import Status
    from opentelemetry.util.types import Attributes

    class RedactingSpanProcessor(SpanProcessor):
        def on_start(self, span: Span, parent_context: Any = None) -> None:
            for key, value in dict(span.attributes or {}).items():
                cleaned = redact_attribute(key, value)
                if cleaned != value:
                    span.set_attribute(key, cleaned)  # type: ignore[arg-type]
            name = redact_text(span.name)
            if name != span.name:
                span.update_name(name)

        def on_end(self, span: ReadableSpan) -> None:
            from opentelemetry.attributes import BoundedAttributes

            attributes: Attributes = BoundedAttributes(attributes=_redacted(span.attributes), immutable=True)
            # ReadableSpan has no setters; processors later in the chain read these same fields.
            span._attributes = attributes
            span._name = redact_text(span.name)
            span._events = tuple(
                Event(e.name, _redacted(e.attributes), e.timestamp) for e in span.events)
            if span.status.description:
                span._status = Status(span.status.status_code, redact_text(span.status.description))

    return RedactingSpanProcessor()


def log_record_processor() -> Any:
    """A LogRecordProcessor that scrubs the body and attributes of every record before export."""
    from opentelemetry.sdk._logs import LogRecordProcessor

    class RedactingLogRecordProcessor(LogRecordProcessor):
        def on_emit(self, log_record: Any) -> None:
            record = log_record.log_record
            if isinstance(record.body, str):
                record.body = redact_text(record.body)
            elif record.body is not None:
                record.body = redact_attribute("body", record.body)
            for key, value in list((record.attributes or {}).items()):
                cleaned = redact_attribute(key, value)
                if cleaned != value:
                    record.attributes[key] = cleaned

        def shutdown(self) -> None:
            return None

        def force_flush(self, timeout_millis: int = 30000) -> bool:
            return True

    return RedactingLogRecordProcessor()


def configure_telemetry() -> bool:
    """Route logs/traces to Application Insights when configured; returns whether it did.

    Imported lazily: azure-monitor-opentelemetry is heavy and only worth loading when it will be used.
    Log redaction is installed either way: the Functions host forwards root-logger records itself.
    """
    global _configured
    from shared.logcontext import install

    install()
    register_settings(os.environ)
    install_log_redaction()
    if _configured or not os.environ.get("APPLICATIONINSIGHTS_CONNECTION_STRING"):
        return False
    try:
        from azure.monitor.opentelemetry import configure_azure_monitor
    except ImportError:
        logging.getLogger(__name__).warning("azure-monitor-opentelemetry is not installed; telemetry stays local")
        return False
    # Application Insights with local auth off only takes Entra ID tokens: use the app's identity.
    credential = None
    if os.environ.get("AZURE_CLIENT_ID"):
        from azure.identity import ManagedIdentityCredential

        credential = ManagedIdentityCredential(client_id=os.environ["AZURE_CLIENT_ID"])
    configure_azure_monitor(logger_name="shared", credential=credential,
                            instrumentation_options=INSTRUMENTATION_OPTIONS,
                            span_processors=[span_processor()],
                            log_record_processors=[log_record_processor()])
    install_log_redaction()  # the handler configure_azure_monitor just added to "shared"
    _configured = True
    return True
