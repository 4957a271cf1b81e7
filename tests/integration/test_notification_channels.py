"""Webhook and email delivery against real receivers: a local HTTP server checks the signature,
a local SMTP sink (aiosmtpd) takes the email, a local relay wants TLS (a throwaway self-signed
certificate) and a login; the events come from the test itself."""

from __future__ import annotations

import asyncio
import json
import ssl
import subprocess
import uuid
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from decimal import Decimal
from email import message_from_bytes
from email.policy import default as default_policy

import pytest
from aiosmtpd.smtp import SMTP, AuthResult
from pydantic import SecretStr, ValidationError

from services.notification import domain
from services.notification.app import create_service
from services.notification.channels import Delivery, DeliveryError, EmailChannel, SmtpSettings
from shared.contracts import DepositBooked, GetChannels, GetDeliveries, GetFeed, ResendDeliveries, SetChannels
from shared.settings import Settings
from tests.support import eventually, fetch, fetchval

pytestmark = pytest.mark.integration

AT = datetime(2026, 11, 25, 14, 0, tzinfo=UTC)
SECRET = "s3cret-for-tests-0123456789"
RELAY_USER, RELAY_PASSWORD = "m1-relay", "relay-pw-5b7e0c1d"


class WebhookReceiver:
    """A plain asyncio HTTP/1.1 server: answers each POST with the next status of ``script``
    (then 200), keeps every request, and accepts a message once per idempotency key."""

    def __init__(self, script: list[int] | None = None, delay: float = 0.0) -> None:
        self.script = list(script or [])
        self.delay = delay
        self.arrived = asyncio.Event()
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.accepted: dict[str, dict] = {}

    async def __aenter__(self) -> WebhookReceiver:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/hooks/m1"
        return self

    async def __aexit__(self, *exc) -> None:
        self.server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while await reader.readline():  # the request line
                headers = {}
                while (line := await reader.readline()) not in (b"\r\n", b""):
                    name, _, value = line.decode().partition(":")
                    headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", 0)))
                self.requests.append((headers, body))
                self.arrived.set()
                await asyncio.sleep(self.delay)
                status = self.script.pop(0) if self.script else 200
                if status == 200:
                    self.accepted.setdefault(headers["idempotency-key"], json.loads(body))
                reply = b"ok" if status == 200 else b"receiver down"
                writer.write(b"HTTP/1.1 %d X\r\nContent-Length: %d\r\n\r\n%s" % (status, len(reply), reply))
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


def encrypted(server: SMTP) -> bool:
    return server.transport.get_extra_info("ssl_object") is not None  # after STARTTLS, or implicit TLS


class Mailbox:
    """Keeps each email, whether its session was logged in and encrypted, and each login tried
    (as the ``authenticator`` of an aiosmtpd server: one user, ``RELAY_USER``/``RELAY_PASSWORD``)."""

    def __init__(self) -> None:
        self.messages: list = []
        self.sessions: list[tuple[bool, bool]] = []  # (logged in, encrypted) per email
        self.logins: list[tuple[str, bool, bool]] = []  # (user, accepted, encrypted) per AUTH

    async def handle_DATA(self, server, session, envelope) -> str:
        self.messages.append(message_from_bytes(envelope.content, policy=default_policy))
        self.sessions.append((bool(session.authenticated), encrypted(server)))
        return "250 OK"

    def authenticate(self, server, session, envelope, mechanism, auth_data) -> AuthResult:
        user = auth_data.login.decode()
        accepted = (user, auth_data.password.decode()) == (RELAY_USER, RELAY_PASSWORD)
        self.logins.append((user, accepted, encrypted(server)))
        return AuthResult(success=accepted, handled=False)


@asynccontextmanager
async def serving(mailbox: Mailbox, implicit_tls: ssl.SSLContext | None = None, **smtp):
    """An aiosmtpd server on a free local port (``mailbox.port``), in this event loop; ``smtp``
    are aiosmtpd.smtp.SMTP's options (tls_context for STARTTLS, authenticator, ...)."""
    server = await asyncio.get_running_loop().create_server(lambda: SMTP(mailbox, hostname="sink.test", **smtp),
                                                            "127.0.0.1", 0, ssl=implicit_tls)
    mailbox.port = server.sockets[0].getsockname()[1]
    try:
        yield mailbox
    finally:
        server.close()


@pytest.fixture
async def smtp_sink():
    async with serving(Mailbox()) as mailbox:
        yield mailbox


@pytest.fixture(scope="module")
def relay_cert(tmp_path_factory) -> tuple[str, str]:
    """A throwaway self-signed certificate for 127.0.0.1 and its key: (cert.pem, key.pem)."""
    folder = tmp_path_factory.mktemp("relay-cert")
    cert, key = str(folder / "cert.pem"), str(folder / "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", key, "-out", cert, "-days", "1", "-subj", "/CN=relay.test",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True, timeout=60)
    return cert, key


def server_tls(relay_cert: tuple[str, str]) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*relay_cert)
    return context


def starttls_relay(relay_cert: tuple[str, str]):
    """A relay that takes no command but EHLO/STARTTLS in clear, and no mail before a login."""
    mailbox = Mailbox()
    return serving(mailbox, tls_context=server_tls(relay_cert), require_starttls=True,
                   authenticator=mailbox.authenticate, auth_required=True)


def email_channel(port: int, **smtp) -> EmailChannel:
    return EmailChannel(SmtpSettings(host="127.0.0.1", port=port, sender="notifications@m1.test", timeout=2.0,
                                     **smtp))


def an_email(to: str = "holder@example.com") -> Delivery:
    return Delivery(id=str(uuid.uuid4()), feed_id=1, account_id=account(), kind="deposit_received",
                    message="Deposit of $1.00 received.", data={}, cause_id="test", created_at=AT, email=to)


def fast_settings(settings, smtp_port: int, **overrides):
    """Fast retries (0.05 s, 0.1 s, ...), 3 attempts, email to the sink."""
    return settings.model_copy(update={
        "smtp_host": "127.0.0.1", "smtp_port": smtp_port, "notification_delivery_poll_seconds": 0.1,
        "notification_retry_base_seconds": 0.05, "notification_delivery_max_attempts": 3,
        "notification_send_timeout": 2.0, **overrides})


@pytest.fixture
async def notification(topology_declared, smtp_sink):
    async with create_service(fast_settings(topology_declared, smtp_sink.port)).running() as svc:
        yield svc


def account() -> str:
    return f"chan-{uuid.uuid4().hex[:8]}"


async def deposit(bus, account_id: str, amount: str = "100.00", message_id: str | None = None) -> str:
    event = DepositBooked(account_id=account_id, deposit_id=uuid.uuid4(), amount=Decimal(amount),
                          cash=Decimal(amount), booked_at=AT)
    message_id = message_id or str(uuid.uuid4())
    await bus.publish_json(event.TYPE, event.model_dump(mode="json"), message_id=message_id)
    return message_id


async def deliveries(bus, account_id: str, settled: int = 0) -> list[dict] | None:
    """The account's deliveries once ``settled`` of them are no longer pending."""
    reply = await bus.request(GetDeliveries(account_id=account_id))
    assert reply.ok, reply
    rows = reply.result["deliveries"]
    return rows if sum(r["status"] != "pending" for r in rows) >= settled else None


async def set_channels(bus, **fields) -> dict:
    reply = await bus.request(SetChannels(**fields))
    assert reply.ok, reply
    return reply.result


async def test_a_notification_reaches_the_signed_webhook_and_the_mailbox_once(notification, bus, smtp_sink):
    acc = account()
    async with WebhookReceiver() as hook:
        view = await set_channels(bus, account_id=acc, webhook_url=hook.url, webhook_secret=SECRET,
                                  email="holder@example.com")
        assert view["webhook_secret_set"] is True and "webhook_secret" not in view
        cause = await deposit(bus, acc)
        rows = await eventually(lambda: deliveries(bus, acc, settled=2))

        assert sorted((r["channel"], r["status"], r["attempts"], r["last_error"]) for r in rows) == [
            ("email", "delivered", 1, None), ("webhook", "delivered", 1, None)]
        (headers, body), = hook.requests
        webhook_row = next(r for r in rows if r["channel"] == "webhook")
        assert headers["idempotency-key"] == webhook_row["id"]
        assert domain.signature_valid(SECRET, int(headers["x-m1-timestamp"]), body, headers["x-m1-signature"])
        assert not domain.signature_valid("another-secret-0123456", int(headers["x-m1-timestamp"]), body,
                                          headers["x-m1-signature"])
        posted = json.loads(body)
        assert posted["message"] == "Deposit of $100.00 received." and posted["cause_id"] == cause
        assert posted["account_id"] == acc and posted["data"]["amount"] == "100.00"

        (mail,) = [m for m in smtp_sink.messages if m["To"] == "holder@example.com" and acc in m.get_content()]
        assert mail["Subject"] == "M1: deposit received"
        assert mail["Message-ID"] == f"<{next(r for r in rows if r['channel'] == 'email')['id']}@m1.notification>"
        assert mail.get_content().startswith("Deposit of $100.00 received.")

        # The same event again: no new feed entry, nothing sent again.
        await deposit(bus, acc, message_id=cause)
        marker = await deposit(bus, acc, "2.00")
        rows = await eventually(lambda: deliveries(bus, acc, settled=4))
        assert len(rows) == 4 and len(hook.requests) == 2
        assert json.loads(hook.requests[1][1])["cause_id"] == marker


async def test_a_webhook_that_fails_then_recovers_gets_the_message_exactly_once(notification, bus):
    acc = account()
    async with WebhookReceiver(script=[500, 500]) as hook:
        await set_channels(bus, account_id=acc, webhook_url=hook.url, webhook_secret=SECRET)
        await deposit(bus, acc)
        (row,) = await eventually(lambda: deliveries(bus, acc, settled=1))
    assert (row["status"], row["attempts"]) == ("delivered", 3)
    assert row["last_error"] == "HTTP 500: receiver down"  # the last failure stays visible
    assert len(hook.requests) == 3 and len(hook.accepted) == 1
    assert {h["idempotency-key"] for h, _ in hook.requests} == {row["id"]}
    assert [h["x-m1-attempt"] for h, _ in hook.requests] == ["1", "2", "3"]


async def test_a_dead_webhook_blocks_neither_the_email_nor_the_feed_and_ends_failed(notification, bus, smtp_sink,
                                                                                    settings):
    acc = account()
    async with WebhookReceiver(script=[503] * 10) as hook:
        await set_channels(bus, account_id=acc, webhook_url=hook.url, webhook_secret=SECRET, email="me@example.com")
        await deposit(bus, acc, "7.00")
        rows = await eventually(lambda: deliveries(bus, acc, settled=2))
    by_channel = {r["channel"]: r for r in rows}
    assert (by_channel["email"]["status"], by_channel["email"]["attempts"]) == ("delivered", 1)
    failed = by_channel["webhook"]
    assert (failed["status"], failed["attempts"], failed["last_error"]) == ("failed", 3, "HTTP 503: receiver down")
    assert failed["next_attempt_at"] is None and len(hook.requests) == 3
    reply = await bus.request(GetDeliveries(account_id=acc, status="failed"))
    assert [d["id"] for d in reply.result["deliveries"]] == [failed["id"]]
    feed = await bus.request(GetFeed(account_id=acc))
    assert [e["message"] for e in feed.result["entries"]] == ["Deposit of $7.00 received."]
    assert any(m["To"] == "me@example.com" for m in smtp_sink.messages)
    assert await fetchval(settings.database_url,
                          "SELECT count(*) FROM notification.deliveries d JOIN notification.feed f ON f.id = d.feed_id"
                          " WHERE f.account_id = $1", acc) == 2


async def test_an_unreachable_webhook_is_retried_until_its_attempts_are_used(notification, bus):
    acc = account()
    async with WebhookReceiver() as hook:
        url = hook.url
    # The receiver is gone: connection refused, retried with backoff until the attempts run out.
    await set_channels(bus, account_id=acc, webhook_url=url, webhook_secret=SECRET)
    await deposit(bus, acc)
    (row,) = await eventually(lambda: deliveries(bus, acc, settled=1))
    assert (row["status"], row["attempts"]) == ("failed", 3) and row["last_error"].startswith("ConnectError")


async def test_channels_are_replaced_read_back_and_checked(notification, bus):
    acc = account()
    empty = await bus.request(GetChannels(account_id=acc))
    assert empty.result == {"account_id": acc, "webhook_url": None, "webhook_secret_set": False, "email": None,
                            "updated_at": None}
    await set_channels(bus, account_id=acc, webhook_url="https://example.com/hook", webhook_secret=SECRET)
    await set_channels(bus, account_id=acc, email="x@example.com")  # the webhook is turned off
    view = (await bus.request(GetChannels(account_id=acc))).result
    assert (view["webhook_url"], view["webhook_secret_set"], view["email"]) == (None, False, "x@example.com")
    unsigned = await bus.request(SetChannels.model_construct(account_id=acc, webhook_url="https://example.com/h"))
    assert not unsigned.ok and "a webhook needs both webhook_url and webhook_secret" in unsigned.reason


async def test_a_commit_wakes_the_worker_without_waiting_for_its_poll(topology_declared, smtp_sink, bus):
    slow_poll = fast_settings(topology_declared, smtp_sink.port, notification_delivery_poll_seconds=30.0)
    acc = account()
    async with create_service(slow_poll).running(), WebhookReceiver() as hook:
        await set_channels(bus, account_id=acc, webhook_url=hook.url, webhook_secret=SECRET)
        await deposit(bus, acc)
        await eventually(lambda: deliveries(bus, acc, settled=1), timeout=5.0)
        assert len(hook.accepted) == 1


async def test_a_send_in_flight_at_shutdown_is_finished_and_recorded(topology_declared, smtp_sink, bus, settings):
    acc = account()
    async with WebhookReceiver(delay=0.5) as hook:
        async with create_service(fast_settings(topology_declared, smtp_sink.port)).running():
            await set_channels(bus, account_id=acc, webhook_url=hook.url, webhook_secret=SECRET)
            await deposit(bus, acc)
            await asyncio.wait_for(hook.arrived.wait(), 10)
        # stopped while the receiver was still answering
        row = (await fetch(settings.database_url,
                           "SELECT d.status, d.attempts FROM notification.deliveries d"
                           " JOIN notification.feed f ON f.id = d.feed_id WHERE f.account_id = $1", acc))[0]
    assert (row["status"], row["attempts"]) == ("delivered", 1) and len(hook.accepted) == 1


async def test_a_pending_delivery_whose_channel_was_turned_off_fails_at_once(topology_declared, smtp_sink, bus):
    acc = account()
    patient = fast_settings(topology_declared, smtp_sink.port, notification_retry_base_seconds=1.0)
    async with create_service(patient).running(), WebhookReceiver(script=[500]) as hook:
        await set_channels(bus, account_id=acc, webhook_url=hook.url, webhook_secret=SECRET)
        await deposit(bus, acc)
        await asyncio.wait_for(hook.arrived.wait(), 10)
        await set_channels(bus, account_id=acc)  # every channel off while the retry waits
        (row,) = await eventually(lambda: deliveries(bus, acc, settled=1), timeout=10)
    assert (row["status"], row["attempts"]) == ("failed", 2)
    assert row["last_error"] == "undeliverable: the account has no webhook any more"
    assert len(hook.requests) == 1


async def test_a_failed_delivery_resent_after_the_receiver_recovers_arrives_once(topology_declared, smtp_sink, bus):
    acc = account()
    slow_poll = fast_settings(topology_declared, smtp_sink.port, notification_delivery_poll_seconds=30.0)
    async with create_service(slow_poll).running(), WebhookReceiver(script=[500, 500, 500]) as hook:
        await set_channels(bus, account_id=acc, webhook_url=hook.url, webhook_secret=SECRET)
        await deposit(bus, acc)
        (failed,) = await eventually(lambda: deliveries(bus, acc, settled=1))
        assert failed["status"] == "failed" and len(hook.accepted) == 0

        again = await bus.request(ResendDeliveries(account_id=acc))
        assert [(d["id"], d["status"], d["attempts"]) for d in again.result["deliveries"]] == [
            (failed["id"], "pending", 0)]
        (row,) = await eventually(lambda: deliveries(bus, acc, settled=1))
        assert (row["status"], row["attempts"]) == ("delivered", 1)
        assert list(hook.accepted) == [failed["id"]] and len(hook.requests) == 4
        nothing = await bus.request(ResendDeliveries(account_id=acc))  # only failed ones are resent
        assert nothing.result["deliveries"] == []


async def test_an_email_goes_through_a_relay_that_wants_starttls_and_a_login(topology_declared, bus, relay_cert):
    acc = account()
    async with starttls_relay(relay_cert) as relay:
        secured = fast_settings(topology_declared, relay.port, smtp_tls="starttls", smtp_username=RELAY_USER,
                                smtp_password=SecretStr(RELAY_PASSWORD), smtp_ca_file=relay_cert[0])
        async with create_service(secured).running():
            await set_channels(bus, account_id=acc, email="holder@example.com")
            await deposit(bus, acc)
            (row,) = await eventually(lambda: deliveries(bus, acc, settled=1))
    assert (row["channel"], row["status"], row["attempts"], row["last_error"]) == ("email", "delivered", 1, None)
    (mail,) = relay.messages
    assert mail["To"] == "holder@example.com" and mail.get_content().startswith("Deposit of $100.00 received.")
    assert relay.logins == [(RELAY_USER, True, True)]  # one login, accepted, after STARTTLS
    assert relay.sessions == [(True, True)]


async def test_starttls_against_a_server_without_it_fails_and_sends_nothing_in_clear():
    mailbox = Mailbox()  # no STARTTLS, and it would even take a login in clear
    async with serving(mailbox, authenticator=mailbox.authenticate, auth_require_tls=False) as plain:
        channel = email_channel(plain.port, tls="starttls", username=RELAY_USER,
                                password=SecretStr(RELAY_PASSWORD))
        with pytest.raises(DeliveryError, match="STARTTLS extension not supported"):
            await channel.send(an_email())
    assert plain.messages == [] and plain.logins == []


async def test_a_wrong_smtp_password_fails_the_attempt(relay_cert):
    async with starttls_relay(relay_cert) as relay:
        channel = email_channel(relay.port, tls="starttls", username=RELAY_USER,
                                password=SecretStr("not-the-password"), ca_file=relay_cert[0])
        with pytest.raises(DeliveryError, match="SMTPAuthenticationError") as failed:
            await channel.send(an_email())
    assert "not-the-password" not in str(failed.value)
    assert relay.messages == [] and relay.logins and not any(accepted for _, accepted, _ in relay.logins)


async def test_implicit_tls_verifies_the_relay_certificate(relay_cert):
    mailbox = Mailbox()
    # aiosmtpd sees no STARTTLS on an implicit TLS connection: AUTH must not wait for one.
    async with serving(mailbox, implicit_tls=server_tls(relay_cert), authenticator=mailbox.authenticate,
                       auth_require_tls=False) as relay:
        login = {"username": RELAY_USER, "password": SecretStr(RELAY_PASSWORD)}
        with pytest.raises(DeliveryError, match="CERTIFICATE_VERIFY_FAILED"):  # not in the system trust store
            await email_channel(relay.port, tls="tls", **login).send(an_email())
        await email_channel(relay.port, tls="tls", ca_file=relay_cert[0], **login).send(an_email("tls@example.com"))
    assert [m["To"] for m in relay.messages] == ["tls@example.com"]
    assert relay.logins == [(RELAY_USER, True, True)] and relay.sessions == [(True, True)]


def test_the_smtp_password_never_shows_in_a_repr(monkeypatch):
    monkeypatch.setenv("M1_SMTP_USERNAME", RELAY_USER)
    monkeypatch.setenv("M1_SMTP_PASSWORD", RELAY_PASSWORD)
    monkeypatch.setenv("M1_SMTP_TLS", "starttls")
    settings = Settings()
    smtp = SmtpSettings.from_settings(settings)
    assert smtp.password.get_secret_value() == RELAY_PASSWORD and smtp.tls == "starttls"
    for text in (repr(settings), str(settings), settings.model_dump_json(), repr(smtp), str(smtp)):
        assert RELAY_PASSWORD not in text


def test_an_unknown_smtp_tls_mode_stops_the_start(monkeypatch):
    monkeypatch.setenv("M1_SMTP_TLS", "STARTTLS")
    with pytest.raises(ValidationError, match="smtp_tls"):
        Settings()
    with pytest.raises(ValueError, match="M1_SMTP_CA_FILE"):  # an unreadable CA bundle too
        email_channel(25, tls="starttls", ca_file="/nonexistent/ca.pem")
