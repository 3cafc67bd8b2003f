"""Notification channels (Teams, Slack, generic signed webhook) and their HTTP delivery.

The outbox/dispatcher calls `channels_from_settings` once, then `deliver` per (channel, notification)
and schedules retries with `backoff_delay`; everything else here is presentation.
"""

from shared.notify.channels import Channel, ChannelSettingsError, channels_from_settings
from shared.notify.delivery import (
    DeliveryResult,
    Sender,
    backoff_delay,
    deliver,
    new_session,
    parse_retry_after,
    senders_for,
)
from shared.notify.generic import sign, verify
from shared.notify.message import (
    CauseRef,
    ClusterRef,
    Notification,
    from_json,
    notification_for,
    notification_id,
    to_generic_body,
    to_json,
)
from shared.notify.urls import redact, validate_webhook_url

__all__ = [
    "CauseRef",
    "Channel",
    "ChannelSettingsError",
    "ClusterRef",
    "DeliveryResult",
    "Notification",
    "Sender",
    "backoff_delay",
    "channels_from_settings",
    "deliver",
    "from_json",
    "new_session",
    "notification_for",
    "notification_id",
    "parse_retry_after",
    "redact",
    "senders_for",
    "sign",
    "to_generic_body",
    "to_json",
    "validate_webhook_url",
    "verify",
]
