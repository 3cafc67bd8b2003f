"""The environment of a monitor that alerts a real HTTPS webhook receiver, for end-to-end tests: the ARM
emulator's settings plus one CA bundle trusting both the emulator and the receiver, probes off by default,
Azurite storage, and the signed generic webhook; and the receiver's requests read back as verified alerts."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from devtools.emulator.arm import Emulator
from shared.notify.generic import verify
from tests.https_receiver import HttpsReceiver

SECRET = "test-secret"


def webhook_env(emu: Emulator, receiver: HttpsReceiver, azurite_connection: str, tmp_path: Path,
                **overrides: str) -> dict[str, str]:
    bundle = tmp_path / "ca.pem"
    bundle.write_text(Path(emu.ca_bundle).read_text() + Path(receiver.ca_path).read_text())
    return {**emu.env(), "REQUESTS_CA_BUNDLE": str(bundle), "SSL_CERT_FILE": str(bundle),
            "NODE_PROBES": "off", "AzureWebJobsStorage": azurite_connection,
            "ALERT_WEBHOOK_URL": receiver.url("/alerts"), "ALERT_WEBHOOK_SECRET": SECRET,
            "WEBHOOK_ALLOWED_HOSTS": "127.0.0.1", **overrides}


def signed_alerts(receiver: HttpsReceiver) -> list[dict[str, Any]]:
    """Every request the receiver got, each checked against the webhook signature, as JSON."""
    out = []
    for request in receiver.requests:
        assert verify(SECRET, request.headers, request.body, now=datetime.now(UTC))
        out.append(json.loads(request.body))
    return out
