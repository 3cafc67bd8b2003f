"""How the monitor reaches a cluster's Kubernetes API: which ARM credential, which identity, which URL.

- Entra ID clusters (`aadProfile` set): `listClusterUserCredential` gives the API server URL and CA
  (its user entry is a kubelogin exec plugin we do not run); the monitor presents its own token for the
  AKS server application (`6dae42f8-4368-4678-94ff-3960e28e3630/.default`).
- Local-account clusters: `listClusterMonitoringUserCredential` (the monitoring user: neither the
  admin nor the user credential), with the client certificate that kubeconfig carries.

Private key material stays in memory until the `kubernetes` client needs it as a file: it is written
to a private temporary directory (mode 0700/0600) and removed when the connection is closed.
"""

from __future__ import annotations

import base64
import binascii
import importlib
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from typing import Any

from shared.azure.clients import ArmClients, to_rest
from shared.azure.collect import describe_http_error
from shared.azure.ids import parse_cluster_id

log = logging.getLogger(__name__)

AKS_SERVER_APP_SCOPE = "6dae42f8-4368-4678-94ff-3960e28e3630/.default"
ENTRA_ID = "entra-id"
MONITORING_USER = "monitoring-user"


class AccessError(Exception):
    """The API cannot be reached or used; the message is the exact `unknown` reason for the report.

    `forbidden`: the monitor was refused (ARM 401/403, no token), rather than not finding its way there.
    """

    def __init__(self, message: str, *, forbidden: bool = False) -> None:
        super().__init__(message)
        self.forbidden = forbidden


@dataclass(frozen=True)
class KubeTarget:
    """Everything needed to open the cluster's API: server URL, CA, and one of token / client cert."""

    server: str
    ca_pem: bytes
    auth: str  # ENTRA_ID | MONITORING_USER
    token: str | None = field(default=None, repr=False)
    client_cert_pem: bytes | None = field(default=None, repr=False)
    client_key_pem: bytes | None = field(default=None, repr=False)


def uses_entra_id(cluster: dict[str, Any]) -> bool:
    props = cluster.get("properties") or {}
    return bool(props.get("aadProfile"))


def fetch_target(clients: ArmClients, cluster: dict[str, Any]) -> KubeTarget:
    """Read the kubeconfig through ARM and pick the identity; raises AccessError with the exact reason."""
    from azure.core.exceptions import AzureError

    ref = parse_cluster_id(str(cluster.get("id", "")))
    container = clients.container(ref.subscription_id)
    entra = uses_entra_id(cluster)
    what = "the cluster user credential (listClusterUserCredential)" if entra else \
        "the cluster monitoring user credential (listClusterMonitoringUserCredential)"
    try:
        if entra:
            answer = container.managed_clusters.list_cluster_user_credentials(ref.resource_group, ref.name)
        else:
            answer = container.managed_clusters.list_cluster_monitoring_user_credentials(ref.resource_group,
                                                                                        ref.name)
    except AzureError as exc:
        raise AccessError(describe_http_error(exc, what),
                          forbidden=getattr(exc, "status_code", None) in (401, 403)) from None
    config = _first_kubeconfig(to_rest(answer), what)
    server, ca_pem, user = _parse_kubeconfig(config, what)
    if entra:
        return KubeTarget(server, ca_pem, ENTRA_ID, token=_token(clients))
    cert, key = user.get("client-certificate-data"), user.get("client-key-data")
    if not cert or not key:
        raise AccessError(f"{what} has no client certificate for the monitoring user; cannot authenticate")
    return KubeTarget(server, ca_pem, MONITORING_USER, client_cert_pem=_b64(cert, what),
                      client_key_pem=_b64(key, what))


def _token(clients: ArmClients) -> str:
    try:
        return str(clients.credential.get_token(AKS_SERVER_APP_SCOPE).token)
    except Exception as exc:  # azure-identity raises several types; the reason must name what failed
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise AccessError(f"could not get a token for the AKS server application ({AKS_SERVER_APP_SCOPE}) "
                          f"from the monitor's identity: {first}", forbidden=True) from None


def _first_kubeconfig(answer: dict[str, Any], what: str) -> str:
    configs = answer.get("kubeconfigs") or []
    if not configs or not configs[0].get("value"):
        raise AccessError(f"{what} returned no kubeconfig")
    value = configs[0]["value"]
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", errors="replace")
    text = str(value)
    if "apiVersion" in text or "clusters:" in text:
        return text
    try:
        return base64.b64decode(text, validate=True).decode("utf-8", errors="replace")
    except (binascii.Error, ValueError):
        raise AccessError(f"{what} returned a kubeconfig that is neither YAML nor base64") from None


def _parse_kubeconfig(text: str, what: str) -> tuple[str, bytes, dict[str, Any]]:
    yaml = importlib.import_module("yaml")  # PyYAML comes with the kubernetes client; no stubs shipped

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        raise AccessError(f"{what} returned a kubeconfig that is not valid YAML") from None
    if not isinstance(data, dict):
        raise AccessError(f"{what} returned an empty kubeconfig")
    context_name = data.get("current-context")
    contexts = {c.get("name"): c.get("context") or {} for c in data.get("contexts") or [] if isinstance(c, dict)}
    context = contexts.get(context_name) or next(iter(contexts.values()), {})
    clusters = {c.get("name"): c.get("cluster") or {} for c in data.get("clusters") or [] if isinstance(c, dict)}
    users = {u.get("name"): u.get("user") or {} for u in data.get("users") or [] if isinstance(u, dict)}
    cluster = clusters.get(context.get("cluster")) or next(iter(clusters.values()), {})
    user = users.get(context.get("user")) or next(iter(users.values()), {})
    server = str(cluster.get("server") or "")
    if not server.startswith("https://"):
        raise AccessError(f"{what} names no https API server ({server or 'none'})")
    ca = cluster.get("certificate-authority-data")
    if not ca:
        raise AccessError(f"{what} carries no certificate-authority-data for the API server")
    ca_pem = _b64(ca, what)
    if not ca_pem.lstrip().startswith(b"-----BEGIN CERTIFICATE-----") or not ca_pem.isascii():
        raise AccessError(f"{what} carries certificate-authority-data that is not a PEM certificate")
    return server, ca_pem, user if isinstance(user, dict) else {}


def _b64(value: Any, what: str) -> bytes:
    try:
        return base64.b64decode(str(value), validate=True)
    except (binascii.Error, ValueError):
        raise AccessError(f"{what} holds a certificate field that is not base64") from None


class KeyFiles:
    """Client certificate and key as files for urllib3, in a private directory removed on close()."""

    def __init__(self, cert_pem: bytes, key_pem: bytes) -> None:
        self.directory = tempfile.mkdtemp(prefix="aks-monitor-kube-")
        os.chmod(self.directory, 0o700)
        self.cert = self._write("client.crt", cert_pem)
        self.key = self._write("client.key", key_pem)

    def _write(self, name: str, data: bytes) -> str:
        path = os.path.join(self.directory, name)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        return path

    def close(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)
