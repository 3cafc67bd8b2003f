"""Storage clients from the `AzureWebJobsStorage` setting, the same way the Functions host reads it.

Two forms are accepted so one setting serves the Functions runtime and our own code:

* a connection string (`UseDevelopmentStorage=true` expands to Azurite's well-known local endpoints,
  because neither azure-data-tables nor azure-storage-queue understands that shorthand);
* identity-based settings `AzureWebJobsStorage__accountName` (or `__tableServiceUri` /
  `__queueServiceUri`) with `__credential=managedidentity` and/or `__clientId`, authenticating with
  Microsoft Entra ID instead of an account key. The Functions host accepts `:` as well as `__` and
  ignores case, so we do too.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any

from azure.core.exceptions import ResourceExistsError
from azure.data.tables import TableClient, TableServiceClient
from azure.storage.queue import QueueServiceClient

from shared.store.tables import DEFAULT_TABLES, TableNames

SETTING = "AzureWebJobsStorage"

# Azurite's documented development account. It is public knowledge, not a secret.
_DEV_ACCOUNT = "devstoreaccount1"
_DEV_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
_DEV_PORTS = {"Blob": 10000, "Queue": 10001, "Table": 10002}


class StorageNotConfiguredError(RuntimeError):
    """Neither a connection string nor identity-based settings were found."""


@dataclass(frozen=True)
class StorageSettings:
    """Where storage is and how to authenticate; exactly one of the two forms is set."""

    connection_string: str | None = None
    table_uri: str | None = None
    queue_uri: str | None = None
    credential_kind: str | None = None  # e.g. "managedidentity"
    client_id: str | None = None

    @property
    def identity_based(self) -> bool:
        return self.connection_string is None


def settings_from_env(env: Mapping[str, str] | None = None) -> StorageSettings:
    """Reads `AzureWebJobsStorage` (connection string) or its identity-based `__*` siblings."""
    source = os.environ if env is None else env
    values = {_normalise(name): value.strip() for name, value in source.items() if value and value.strip()}
    conn = values.get(_normalise(SETTING))
    if conn:
        return StorageSettings(connection_string=expand_development_storage(conn))
    account = values.get(_normalise(f"{SETTING}__accountName"))
    table_uri = values.get(_normalise(f"{SETTING}__tableServiceUri"))
    queue_uri = values.get(_normalise(f"{SETTING}__queueServiceUri"))
    if account:
        table_uri = table_uri or f"https://{account}.table.core.windows.net"
        queue_uri = queue_uri or f"https://{account}.queue.core.windows.net"
    if not table_uri:
        raise StorageNotConfiguredError(
            f"storage is not configured: set {SETTING} to a connection string "
            f"(UseDevelopmentStorage=true for Azurite), or {SETTING}__accountName / "
            f"{SETTING}__tableServiceUri for identity-based access"
        )
    return StorageSettings(
        table_uri=table_uri,
        queue_uri=queue_uri,
        credential_kind=values.get(_normalise(f"{SETTING}__credential")),
        client_id=values.get(_normalise(f"{SETTING}__clientId")),
    )


def _normalise(name: str) -> str:
    return name.replace(":", "__").lower()


def expand_development_storage(conn: str) -> str:
    """`UseDevelopmentStorage=true[;DevelopmentStorageProxyUri=http://host]` -> a full Azurite string."""
    parts = dict(_pairs(conn))
    if parts.get("usedevelopmentstorage", "").lower() != "true":
        return conn
    base = parts.get("developmentstorageproxyuri", "http://127.0.0.1").rstrip("/")
    endpoints = "".join(f"{kind}Endpoint={base}:{port}/{_DEV_ACCOUNT};" for kind, port in _DEV_PORTS.items())
    return f"DefaultEndpointsProtocol=http;AccountName={_DEV_ACCOUNT};AccountKey={_DEV_KEY};{endpoints}"


def _pairs(conn: str) -> list[tuple[str, str]]:
    pairs = []
    for segment in conn.split(";"):
        name, sep, value = segment.partition("=")
        if sep:
            pairs.append((name.strip().lower(), value.strip()))
    return pairs


def _credential(settings: StorageSettings) -> Any:
    # Imported lazily: azure-identity is slow to import and unused with connection strings.
    from azure.identity import DefaultAzureCredential, ManagedIdentityCredential

    if settings.client_id:
        return ManagedIdentityCredential(client_id=settings.client_id)
    if (settings.credential_kind or "").lower() == "managedidentity":
        return ManagedIdentityCredential()
    return DefaultAzureCredential()


def table_service(settings: StorageSettings, **client_options: Any) -> TableServiceClient:
    if settings.connection_string is not None:
        return TableServiceClient.from_connection_string(settings.connection_string, **client_options)
    assert settings.table_uri is not None
    return TableServiceClient(endpoint=settings.table_uri, credential=_credential(settings), **client_options)


def queue_service(settings: StorageSettings, **client_options: Any) -> QueueServiceClient:
    if settings.connection_string is not None:
        return QueueServiceClient.from_connection_string(settings.connection_string, **client_options)
    if not settings.queue_uri:
        raise StorageNotConfiguredError(
            f"queues need {SETTING}__accountName or {SETTING}__queueServiceUri (only a table URI is set)"
        )
    return QueueServiceClient(account_url=settings.queue_uri, credential=_credential(settings), **client_options)


def ensure_tables(service: TableServiceClient, names: TableNames = DEFAULT_TABLES) -> None:
    """Creates our tables if missing; another worker creating one first (409) is fine."""
    for name in names.all():
        with suppress(ResourceExistsError):
            service.create_table(name)


@dataclass
class Store:
    """The table clients of one deployment, plus the channels every notification is queued for.

    `channels` lives here (not on every call) because reconcile and the dispatcher must agree on it:
    the names of the configured notification channels, e.g. ("teams", "webhook"), typically
    `tuple(c.name for c in shared.notify.channels.channels_from_settings(os.environ))`. A transition
    committed while it is empty is recorded (event row) but queued for no channel.
    """

    findings: TableClient
    finding_events: TableClient
    nsg_snapshots: TableClient
    checkpoints: TableClient
    outbox: TableClient
    cluster_status: TableClient
    diagnoses: TableClient
    channels: tuple[str, ...] = ()
    names: TableNames = field(default=DEFAULT_TABLES)
    snat_samples: TableClient | None = None  # None: SNAT samples are not kept (a Store built by hand)


def store_from_service(service: TableServiceClient, *, names: TableNames = DEFAULT_TABLES,
                       channels: tuple[str, ...] = (), create: bool = True) -> Store:
    if create:
        ensure_tables(service, names)
    return Store(
        findings=service.get_table_client(names.findings),
        finding_events=service.get_table_client(names.finding_events),
        nsg_snapshots=service.get_table_client(names.nsg_snapshots),
        checkpoints=service.get_table_client(names.checkpoints),
        outbox=service.get_table_client(names.outbox),
        cluster_status=service.get_table_client(names.cluster_status),
        diagnoses=service.get_table_client(names.diagnoses),
        channels=channels,
        snat_samples=service.get_table_client(names.snat_samples),
        names=names,
    )


def open_store(env: Mapping[str, str] | None = None, *, names: TableNames = DEFAULT_TABLES,
               channels: tuple[str, ...] = (), create: bool = True, **client_options: Any) -> Store:
    """The store named by `AzureWebJobsStorage`, tables created if missing."""
    service = table_service(settings_from_env(env), **client_options)
    return store_from_service(service, names=names, channels=channels, create=create)
