"""Delivery channels behind one interface: ``await channel.send(delivery)`` returns when the
receiver has accepted the notification and raises when it has not.

- ``LogChannel``: one INFO line per notification (always on; cannot fail).
- ``WebhookChannel``: an HTTP POST of the notification JSON, signed with the account's
  secret (see ``domain.signature``), with the delivery id as idempotency key.
- ``EmailChannel``: a plain-text email over SMTP.

Retries are not the channels' business: the delivery worker (``delivery.py``) retries with
backoff and records every attempt.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage
from typing import Any, Protocol

import aiosmtplib
import httpx

from services.notification import domain


@dataclass(frozen=True)
class Delivery:
    """One notification on its way to one channel, with the account's channel settings."""

    id: str | None  # the delivery row's id (None for the log, which keeps no rows)
    feed_id: int
    account_id: str
    kind: str
    message: str
    data: dict[str, Any]
    cause_id: str
    created_at: datetime
    attempt: int = 1
    webhook_url: str | None = None
    webhook_secret: str | None = None
    email: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def entry(self) -> dict[str, Any]:
        """The feed entry as the holder's systems see it."""
        return {"id": self.feed_id, "account_id": self.account_id, "kind": self.kind, "message": self.message,
                "data": self.data, "cause_id": self.cause_id, "created_at": self.created_at.isoformat()}


class DeliveryError(Exception):
    """The receiver did not accept the notification; another attempt may succeed."""


class Undeliverable(DeliveryError):
    """No attempt can succeed (the account turned the channel off): fail at once."""


class Channel(Protocol):
    name: str

    async def send(self, delivery: Delivery) -> None: ...

    async def close(self) -> None: ...


class LogChannel:
    """The always-on channel: the log line's message is the text the holder reads;
    ``account_id``, ``kind``, ``feed_id``, ``cause_id`` (and any extra) ride along."""

    name = "log"

    def __init__(self, logger: logging.Logger) -> None:
        self.logger = logger
        self.logger.setLevel(logging.INFO)  # whatever the service's log level

    async def send(self, delivery: Delivery) -> None:
        self.logger.info(delivery.message, extra={"account_id": delivery.account_id, "kind": delivery.kind,
                                                  "feed_id": delivery.feed_id, "cause_id": delivery.cause_id,
                                                  **delivery.extra})

    async def close(self) -> None:
        pass


class WebhookChannel:
    name = "webhook"

    def __init__(self, timeout: float, client: httpx.AsyncClient | None = None) -> None:
        self.client = client or httpx.AsyncClient(timeout=timeout, follow_redirects=False)

    async def send(self, delivery: Delivery) -> None:
        if not delivery.webhook_url or not delivery.webhook_secret:
            raise Undeliverable("the account has no webhook any more")
        body = domain.webhook_body(str(delivery.id), delivery.entry())
        timestamp = int(time.time())
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "m1-notification",
            domain.TIMESTAMP_HEADER: str(timestamp),
            domain.SIGNATURE_HEADER: domain.signature(delivery.webhook_secret, timestamp, body),
            domain.IDEMPOTENCY_HEADER: str(delivery.id),
            "X-M1-Attempt": str(delivery.attempt),
        }
        try:
            response = await self.client.post(delivery.webhook_url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise DeliveryError(f"{type(exc).__name__}: {exc}".rstrip(": ")) from exc
        if not response.is_success:
            raise DeliveryError(f"HTTP {response.status_code}: {response.text[:200]}".rstrip(": "))

    async def close(self) -> None:
        await self.client.aclose()


class EmailChannel:
    name = "email"

    def __init__(self, host: str, port: int, sender: str, timeout: float) -> None:
        self.host, self.port, self.sender, self.timeout = host, port, sender, timeout

    def render(self, delivery: Delivery) -> EmailMessage:
        mail = EmailMessage()
        mail["From"] = self.sender
        mail["To"] = delivery.email
        mail["Subject"] = domain.email_subject(delivery.kind)
        # The same delivery keeps its Message-ID on every attempt: a receiving system can
        # drop a retried copy after a lost SMTP answer.
        mail["Message-ID"] = f"<{delivery.id}@m1.notification>"
        mail["X-M1-Delivery"] = str(delivery.id)
        mail.set_content(f"{delivery.message}\n\n(account {delivery.account_id}, "
                         f"{delivery.created_at.isoformat()})\n")
        return mail

    async def send(self, delivery: Delivery) -> None:
        if not delivery.email:
            raise Undeliverable("the account has no email address any more")
        try:
            await aiosmtplib.send(self.render(delivery), hostname=self.host, port=self.port, timeout=self.timeout)
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise DeliveryError(f"{type(exc).__name__}: {exc}") from exc

    async def close(self) -> None:
        pass
