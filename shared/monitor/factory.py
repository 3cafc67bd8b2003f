"""One way to build the Monitor from settings: the Functions context, the CLI and the dev tools all use it.

Every configuration problem (a bad setting, a webhook URL that is not allowed, no storage configured)
becomes one MonitorSetupError whose message names the setting, never a secret value.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING

from shared.monitor.queues import DEFAULT_QUEUES, QueueNames

if TYPE_CHECKING:
    from shared.azure.clients import ArmClients
    from shared.monitor.cycle import Monitor
    from shared.store.connection import Store


class MonitorSetupError(ValueError):
    """The settings cannot make a working monitor; the message says which setting and why."""


def build_monitor(env: Mapping[str, str] | None = None, *, store: Store | None = None,
                  clients: ArmClients | None = None, now: Callable[[], datetime] | None = None,
                  queues: QueueNames = DEFAULT_QUEUES) -> Monitor:
    """Settings, notification channels and storage from `env` (default: the process environment).

    `store` / `clients` / `now` / `queues` let tests and the demo supply their own (a namespaced store,
    a fake clock) while everything else still comes from the settings.
    """
    from shared.monitor.cycle import Monitor
    from shared.notify.channels import ChannelSettingsError, channels_from_settings
    from shared.settings import Settings, SettingsError
    from shared.store.connection import StorageNotConfiguredError, open_store

    values = dict(os.environ if env is None else env)
    try:
        settings = Settings.from_env(values)
    except SettingsError as exc:
        raise MonitorSetupError(str(exc)) from None
    if store is None:
        try:
            channels = tuple(c.name for c in channels_from_settings(values))
        except ChannelSettingsError as exc:
            raise MonitorSetupError(str(exc)) from None
        try:
            store = open_store(values, channels=channels)
        except StorageNotConfiguredError as exc:
            raise MonitorSetupError(str(exc)) from None
    return Monitor(settings, store, clients=clients, env=values, now=now, queues=queues)
