"""A throwaway CA and server certificate for the emulator's HTTPS endpoint.

The CA PEM is written to a file because `REQUESTS_CA_BUNDLE` (which azure-core's requests transport
honours) must name a file. Note that pointing REQUESTS_CA_BUNDLE at it replaces certifi's bundle for
that process: fine for tests and the demo, which only talk to loopback.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

import trustme


@dataclass(frozen=True)
class ServerTls:
    context: ssl.SSLContext
    ca_bundle: Path


def make_server_tls(directory: Path) -> ServerTls:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)
    ca_path = directory / "emulator-ca.pem"
    ca.cert_pem.write_to_path(str(ca_path))
    return ServerTls(context=context, ca_bundle=ca_path)
