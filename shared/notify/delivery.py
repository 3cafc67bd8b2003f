"""One HTTP attempt per call, classified for the outbox: delivered, retry later, or give up.

The outbox owns retries (it survives restarts), so the transport here never retries on its own and
never follows redirects (a redirect could lead outside the webhook host allow-list). Webhook URLs
carry their credential in the path or query, so nothing here puts a URL into an error or a log
record except as `urls.redact` output, and urllib3's own debug lines are scrubbed as well.
"""

from __future__ import annotations

import contextlib
import logging
import math
import random
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import requests
from requests.adapters import HTTPAdapter

from shared.notify.channels import Channel
from shared.notify.message import Notification, from_json, notification_id
from shared.notify.urls import sensitive_parts

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S: tuple[float, float] = (3.05, 10.0)  # (connect, read)
MAX_RETRY_AFTER_S = 3600.0  # a receiver asking for more than an hour is treated as asking for an hour
BACKOFF_BASE_S = 5.0
BACKOFF_CAP_S = 900.0
_RESPONSE_SNIPPET_BYTES = 300
_RESPONSE_DRAIN_BYTES = 256 * 1024
_USER_AGENT = "aks-tunnel-monitor"
_REDACTED = "…"


@dataclass(frozen=True)
class DeliveryResult:
    """The outcome of one attempt. `error` is safe to log and store: it never holds a URL path or secret."""

    channel: str
    delivered: bool
    status: int | None
    retry_after_s: float | None
    permanent: bool
    error: str

    @property
    def retryable(self) -> bool:
        return not self.delivered and not self.permanent


def new_session() -> requests.Session:
    """A pooled session with transport retries off: the outbox decides when to try again."""
    session = requests.Session()
    adapter = HTTPAdapter(pool_connections=4, pool_maxsize=4, max_retries=0)
    session.mount("https://", adapter)
    session.headers["User-Agent"] = _USER_AGENT
    return session


_shared_session: requests.Session | None = None
_shared_session_lock = threading.Lock()


def shared_session() -> requests.Session:
    """Process-wide session so repeated deliveries reuse TLS connections to the same webhook host."""
    global _shared_session
    with _shared_session_lock:
        if _shared_session is None:
            _shared_session = new_session()
        return _shared_session


def deliver(
    channel: Channel,
    n: Notification,
    *,
    session: requests.Session | None = None,
    timeout: float | tuple[float, float] = DEFAULT_TIMEOUT_S,
    now: datetime | None = None,
) -> DeliveryResult:
    """POSTs `n` to `channel` once and classifies the outcome (see module docstring)."""
    moment = now or datetime.now(UTC)
    secrets = sensitive_parts(channel.url) + ((channel.secret,) if channel.secret else ())
    _scrubber.register(secrets)
    where = channel.redacted_url
    try:
        body, headers = channel.build(n, moment)
    except ValueError as exc:
        return _finish(channel, n, DeliveryResult(
            channel.name, False, None, None, True, f"{channel.name}: cannot build the message: {exc}"))
    try:
        response = (session or shared_session()).post(
            channel.url, data=body, headers=headers, timeout=timeout, allow_redirects=False, stream=True
        )
    except requests.exceptions.Timeout:
        result = DeliveryResult(channel.name, False, None, None, False, f"{channel.name}: {where} timed out")
    except requests.exceptions.SSLError as exc:
        reason = _scrub(_root_reason(exc), secrets)
        result = DeliveryResult(
            channel.name, False, None, None, False, f"{channel.name}: TLS failure talking to {where}: {reason}"
        )
    except requests.exceptions.RequestException as exc:
        reason = _scrub(_root_reason(exc), secrets)
        result = DeliveryResult(
            channel.name, False, None, None, False, f"{channel.name}: connection to {where} failed: {reason}"
        )
    else:
        with response:
            snippet = _scrub(_read_snippet(response), secrets)
            result = _classify(channel.name, where, status=response.status_code,
                               retry_after=response.headers.get("Retry-After"), snippet=snippet, now=moment)
    return _finish(channel, n, result)


Sender = Callable[[str, str], DeliveryResult]


def senders_for(
    channels: Iterable[Channel],
    *,
    session: requests.Session | None = None,
    timeout: float | tuple[float, float] = DEFAULT_TIMEOUT_S,
) -> dict[str, Sender]:
    """Adapters for the outbox dispatcher: `(channel name, stored notification JSON) -> DeliveryResult`.

    The outbox stores `message.to_json` text and never sees URLs or secrets; a row that no longer
    parses is a permanent failure (retrying cannot fix it) rather than an exception.
    """

    def sender_for(channel: Channel) -> Sender:
        def send(name: str, payload_json: str) -> DeliveryResult:
            try:
                n = from_json(payload_json)
            except ValueError as exc:
                return DeliveryResult(name, False, None, None, True, f"{name}: unreadable outbox row: {exc}")
            return deliver(channel, n, session=session, timeout=timeout)

        return send

    return {channel.name: sender_for(channel) for channel in channels}


def _classify(name: str, where: str, *, status: int, retry_after: str | None, snippet: str,
              now: datetime) -> DeliveryResult:
    if 200 <= status < 300:
        return DeliveryResult(name, True, status, None, False, "")
    detail = f"{name}: {where} answered HTTP {status}" + (f": {snippet}" if snippet else "")
    if 300 <= status < 400:
        return DeliveryResult(name, False, status, None, True, detail + " (redirects are not followed)")
    if 400 <= status < 500 and status not in (408, 429):
        return DeliveryResult(name, False, status, None, True, detail)
    return DeliveryResult(name, False, status, parse_retry_after(retry_after, now), False, detail)


def _finish(channel: Channel, n: Notification, result: DeliveryResult) -> DeliveryResult:
    key = notification_id(n)[:12]
    if result.delivered:
        log.info("notification %s (%s) delivered via %s to %s (HTTP %s)",
                 key, n.event, channel.name, channel.redacted_url, result.status)
    else:
        log.warning("notification %s (%s) not delivered (%s): %s", key, n.event,
                    "permanent" if result.permanent else "will retry", result.error)
    return result


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds to wait from a Retry-After header: delay-seconds or an HTTP-date; None if absent/garbled."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - now).total_seconds()
    if not math.isfinite(seconds):  # float() also accepts "nan" and "inf"
        return None
    return max(0.0, seconds)


_jitter = random.Random()  # noqa: S311 - spreads retries out; nothing secret depends on it


def backoff_delay(
    attempt: int,
    retry_after_s: float | None = None,
    *,
    base_s: float = BACKOFF_BASE_S,
    cap_s: float = BACKOFF_CAP_S,
    rand: Callable[[], float] = _jitter.random,
) -> float:
    """Seconds before attempt `attempt + 1`: exponential, capped, with "equal jitter".

    Half the window is fixed and half random, so many findings failing together spread out without
    any of them retrying almost immediately. A larger Retry-After wins (up to MAX_RETRY_AFTER_S).
    """
    if attempt < 1:
        raise ValueError("attempt counts from 1")
    window = min(cap_s, base_s * 2.0 ** min(attempt - 1, 32))
    delay = window / 2 + rand() * window / 2
    if retry_after_s is not None:
        delay = max(delay, min(retry_after_s, MAX_RETRY_AFTER_S))
    return delay


def _read_snippet(response: requests.Response) -> str:
    """The start of the receiver's answer (Slack explains rejections there).

    The rest is drained (up to a bound) because urllib3 hands a connection back to the pool only
    once its response was read to the end; an endless body just costs that one connection.
    """
    try:
        raw = response.raw.read(_RESPONSE_SNIPPET_BYTES, decode_content=True)
    except Exception:  # a broken error body must not hide the status code
        return ""
    with contextlib.suppress(Exception):
        drained = 0
        while drained < _RESPONSE_DRAIN_BYTES:
            chunk = response.raw.read(16_384, decode_content=True)
            if not chunk:
                break
            drained += len(chunk)
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else ""
    return " ".join(text.split())[:200]


def _root_reason(exc: BaseException) -> str:
    """The innermost OS-level reason ("Connection refused", a TLS verify failure), else the class name.

    requests/urllib3 messages embed the full URL, so their text is never used directly.
    """
    seen: set[int] = set()
    queue: list[BaseException] = [exc]
    while queue:
        current = queue.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        if (isinstance(current, OSError) and current.strerror
                and not isinstance(current, requests.exceptions.RequestException)):
            return str(current.strerror)
        nested: list[object] = [current.__cause__, current.__context__, getattr(current, "reason", None),
                                *current.args]
        queue.extend(e for e in nested if isinstance(e, BaseException))
    return type(exc).__name__


def _scrub(text: str, secrets: Iterable[str]) -> str:
    for secret in sorted(secrets, key=len, reverse=True):
        if secret and secret in text:
            text = text.replace(secret, _REDACTED)
    return text


class _SecretScrubber(logging.Filter):
    """Rewrites log records that would quote a webhook path/query or secret.

    urllib3 logs `"POST /path?query HTTP/1.1" 200` at DEBUG; that path is the Slack/Teams credential.
    Logger-level filters only see records created on that exact logger, hence the explicit list.
    """

    LOGGERS = ("urllib3.connectionpool", "urllib3.connection", "urllib3.util.retry",
               "urllib3.poolmanager", "urllib3.response", "requests", __name__)

    def __init__(self) -> None:
        super().__init__()
        self._secrets: frozenset[str] = frozenset()
        self._lock = threading.Lock()

    def register(self, secrets: Iterable[str]) -> None:
        with self._lock:
            self._secrets = self._secrets | {s for s in secrets if s}

    def filter(self, record: logging.LogRecord) -> bool:
        secrets = self._secrets
        if not secrets:
            return True
        message = record.getMessage()
        cleaned = _scrub(message, secrets)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True

    def install(self) -> None:
        for name in self.LOGGERS:
            logger = logging.getLogger(name)
            if self not in logger.filters:
                logger.addFilter(self)


_scrubber = _SecretScrubber()
_scrubber.install()
