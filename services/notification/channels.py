"""Delivery channels behind one interface: ``await channel.send(delivery)`` returns when the
receiver has accepted the notification and raises when it has not.

- ``LogChannel``: one INFO line per notification (always on; cannot fail).
- ``WebhookChannel``: an HTTP POST of the notification JSON, signed with the account's
  secret (see ``domain.signature``), with the delivery id as idempotency key.
- ``EmailChannel``: a plain-text email over SMTP (optionally STARTTLS or implicit TLS, and a
  login), configured by one ``SmtpSettings``.

Retries are not the channels' business: the delivery worker (``delivery.py``) retries with
backoff and records every attempt.
"""

from __future__ import annotations

import logging
import ssl
import time
from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage
from typing import TYPE_CHECKING, Any, Protocol

import aiosmtplib
import httpx
from pydantic import SecretStr

from services.notification import domain
from shared.settings import SmtpTls

if TYPE_CHECKING:
    from shared.settings import Settings


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


@dataclass(frozen=True)
class SmtpSettings:
    """Where and how the email channel reaches its relay (``M1_SMTP_*``, shared/settings.py).

    ``tls``: "none" (no TLS asked for: aiosmtplib still upgrades with STARTTLS by itself when
    the server offers it), "starttls" (STARTTLS or the attempt fails: never sent in clear) or
    "tls" (implicit TLS, e.g. port 465). The relay's certificate is always verified, against
    ``ca_file`` when set, else the system trust store. A login only when ``username`` is set.
    """

    host: str
    port: int
    sender: str
    timeout: float
    tls: SmtpTls = "none"
    username: str | None = None
    password: SecretStr | None = None  # its repr is "**********"
    ca_file: str | None = None

    @classmethod
    def from_settings(cls, s: Settings) -> SmtpSettings:
        return cls(host=s.smtp_host, port=s.smtp_port, sender=s.smtp_from, timeout=s.notification_send_timeout,
                   tls=s.smtp_tls, username=s.smtp_username, password=s.smtp_password, ca_file=s.smtp_ca_file)


class EmailChannel:
    name = "email"

    def __init__(self, smtp: SmtpSettings) -> None:
        self.smtp = smtp
        # Built once: a CA bundle that cannot be read stops the service at start, not each attempt.
        try:
            self.tls_context = ssl.create_default_context(cafile=smtp.ca_file)
        except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
            raise ValueError(f"M1_SMTP_CA_FILE={smtp.ca_file!r}: not a readable CA bundle ({exc})") from exc

    def render(self, delivery: Delivery) -> EmailMessage:
        mail = EmailMessage()
        mail["From"] = self.smtp.sender
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
        smtp = self.smtp
        login = bool(smtp.username)
        try:
            await aiosmtplib.send(
                self.render(delivery), hostname=smtp.host, port=smtp.port, timeout=smtp.timeout,
                # start_tls=None is aiosmtplib's "upgrade if offered" (the behaviour before M1_SMTP_TLS);
                # True fails the attempt, before any login or mail, when the server offers no STARTTLS.
                use_tls=smtp.tls == "tls", start_tls={"none": None, "starttls": True, "tls": False}[smtp.tls],
                tls_context=self.tls_context, username=smtp.username if login else None,
                password=smtp.password.get_secret_value() if login and smtp.password else None)
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise DeliveryError(f"{type(exc).__name__}: {exc}") from exc

    async def close(self) -> None:
        pass
