"""Logging and Application Insights: on when APPLICATIONINSIGHTS_CONNECTION_STRING is set, quiet otherwise."""

from __future__ import annotations

import logging
import os

_configured = False


def configure_telemetry() -> bool:
    """Route logs/traces to Application Insights when configured; returns whether it did.

    Imported lazily: azure-monitor-opentelemetry is heavy and only worth loading when it will be used.
    """
    global _configured
    if _configured or not os.environ.get("APPLICATIONINSIGHTS_CONNECTION_STRING"):
        return False
    try:
        from azure.monitor.opentelemetry import configure_azure_monitor
    except ImportError:
        logging.getLogger(__name__).warning("azure-monitor-opentelemetry is not installed; telemetry stays local")
        return False
    configure_azure_monitor(logger_name="shared")
    _configured = True
    return True
