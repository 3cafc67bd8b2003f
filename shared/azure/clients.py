"""One lazily created, reused SDK client per subscription and service.

The SDK packages are imported on first use only: `function_app` and `analyze` must start without paying
for azure.mgmt.* imports (Functions cold start).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from shared.azure.pacing import BucketRegistry, CallStats, PacingPolicy
from shared.settings import Settings

# Past azure-core's default of 3 status retries: a fleet scan must survive bursts of 429s. Retry-After is
# always honoured by the SDK's RetryPolicy.
RETRY_KWARGS: dict[str, Any] = {
    "retry_total": 12,
    "retry_status": 10,
    "retry_connect": 3,
    "retry_read": 3,
    "retry_backoff_factor": 0.5,
    "retry_backoff_max": 60,
}


class ArmClients:
    def __init__(self, settings: Settings, credential: Any = None) -> None:
        self.settings = settings
        self.stats = CallStats()
        self._credential = credential
        self._buckets = BucketRegistry(settings.reads_per_second, settings.read_burst)
        self._clients: dict[tuple[str, str], Any] = {}
        self._lock = threading.Lock()

    @property
    def credential(self) -> Any:
        with self._lock:
            if self._credential is None:
                from azure.identity import DefaultAzureCredential

                self._credential = DefaultAzureCredential()
            return self._credential

    def _common(self) -> dict[str, Any]:
        return {
            "base_url": self.settings.arm_endpoint,
            "credential_scopes": [self.settings.arm_scope],
            "per_retry_policies": [PacingPolicy(self._buckets, self.stats)],
            **RETRY_KWARGS,
        }

    def _client(self, service: str, subscription: str, factory: Callable[[], Any]) -> Any:
        key = (service, subscription)
        with self._lock:
            found = self._clients.get(key)
        if found is not None:
            return found
        created = factory()
        with self._lock:
            return self._clients.setdefault(key, created)

    def subscriptions(self) -> Any:
        def make() -> Any:
            from azure.mgmt.resource.subscriptions import SubscriptionClient

            return SubscriptionClient(self.credential, **self._common())

        return self._client("subscriptions", "", make)

    def container(self, subscription: str) -> Any:
        def make() -> Any:
            from azure.mgmt.containerservice import ContainerServiceClient

            return ContainerServiceClient(self.credential, subscription, **self._common())

        return self._client("containerservice", subscription, make)

    def compute(self, subscription: str) -> Any:
        def make() -> Any:
            from azure.mgmt.compute import ComputeManagementClient

            return ComputeManagementClient(self.credential, subscription, **self._common())

        return self._client("compute", subscription, make)

    def network(self, subscription: str) -> Any:
        def make() -> Any:
            from azure.mgmt.network import NetworkManagementClient

            return NetworkManagementClient(self.credential, subscription, **self._common())

        return self._client("network", subscription, make)

    def monitor(self, subscription: str) -> Any:
        def make() -> Any:
            from azure.mgmt.monitor import MonitorManagementClient

            return MonitorManagementClient(self.credential, subscription, **self._common())

        return self._client("monitor", subscription, make)

    def close(self) -> None:
        with self._lock:
            clients = list(self._clients.values())
            self._clients.clear()
        for client in clients:
            close = getattr(client, "close", None)
            if close is not None:
                close()


def to_rest(model: Any) -> dict[str, Any]:
    """SDK model -> the REST JSON shape (as in Azure's examples), whatever generation of SDK produced it."""
    if model is None:
        return {}
    if isinstance(model, dict):
        return model
    serialize = getattr(model, "serialize", None)
    if callable(serialize):  # msrest-generation models (azure-mgmt-monitor)
        return dict(serialize(keep_readonly=True))
    as_dict = getattr(model, "as_dict", None)
    if callable(as_dict):  # typespec-generation models: as_dict() keeps REST names
        return dict(as_dict())
    raise TypeError(f"cannot convert {type(model).__name__} to REST JSON")
