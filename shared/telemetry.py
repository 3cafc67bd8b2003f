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
    from shared.logcontext import install

    install()
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
    configure_azure_monitor(logger_name="shared", credential=credential)
    _configured = True
    return True
