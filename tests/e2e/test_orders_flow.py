"""Orders and notifications through every service as processes: a deposit, order buys, a
cancel, a window with a halted security carried over, the next window, a withdrawal. The
holder's feed holds exactly what happened, once each; a signed webhook (a local HTTP server
that fails its first request) and an email sink (aiosmtpd) each receive every notification
exactly once; and every order ends in exactly one final state."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import uuid
from collections import Counter
from decimal import Decimal
from email import message_from_bytes
from email.policy import default as default_policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller

from m1.runner import Supervisor, migrate_all
from services.notification.domain import signature_valid
from shared.contracts import (
    CancelOrder,
    CloseWindow,
    GetDeliveries,
    GetFeed,
    GetOrder,
    GetOrders,
    HaltSecurity,
    OpenAccount,
    PieSpec,
    PlaceOrder,
    ResumeSecurity,
    SetChannels,
    SetPie,
    SetPrices,
    SetSettings,
)
from shared.db import drop_database
from shared.settings import Settings
from shared.topology import SERVICES
from tests.e2e.conftest import free_port
from tests.e2e.test_windows import window_reconciles
from tests.support import PG_BASE, create_vhost, delete_vhost, eventually, fetchval, unique_name
from tests.support_ledger import assert_ledger_checks_out

pytestmark = pytest.mark.e2e

D = Decimal
ROOT = Path(__file__).resolve().parents[2]
SECRET = "e2e-webhook-secret-0123456789"


class Webhook(BaseHTTPRequestHandler):
    """Answers 500 to the very first POST (the channel fails, then recovers), 200 after;
    keeps every request and the accepted bodies by idempotency key."""

    requests: list[tuple[dict, bytes]] = []
    accepted: dict[str, list[bytes]] = {}
    failures_left = 1
    lock = threading.Lock()

    def do_POST(self) -> None:  # noqa: N802 (the http.server name)
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        with Webhook.lock:
            Webhook.requests.append((dict(self.headers), body))
            fail = Webhook.failures_left > 0
            Webhook.failures_left -= fail
            if not fail:
                Webhook.accepted.setdefault(self.headers["Idempotency-Key"], []).append(body)
        self.send_response(500 if fail else 200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


class Mailbox:
    def __init__(self) -> None:
        self.messages: list = []

    async def handle_DATA(self, server, session, envelope) -> str:  # noqa: N802 (aiosmtpd's name)
        self.messages.append(message_from_bytes(envelope.content, policy=default_policy))
        return "250 OK"


@pytest.fixture(scope="module")
def receivers():
    webhook = ThreadingHTTPServer(("127.0.0.1", 0), Webhook)
    threading.Thread(target=webhook.serve_forever, daemon=True).start()
    mailbox = Mailbox()
    smtp = Controller(mailbox, hostname="127.0.0.1", port=free_port())
    smtp.start()
    yield f"http://127.0.0.1:{webhook.server_address[1]}/m1", smtp.port, mailbox
    smtp.stop()
    webhook.shutdown()


@pytest.fixture(scope="module")
def system(tmp_path_factory, receivers):
    """Every service as a process, the notification service mailing the local sink and
    retrying fast."""
    _, smtp_port, _ = receivers
    vhost, database = unique_name("m1-e2e"), unique_name("m1_e2e")
    settings = Settings(rabbitmq_url=create_vhost(vhost), database_url=f"{PG_BASE}/{database}")
    asyncio.run(migrate_all(settings))
    log_dir = tmp_path_factory.mktemp("logs")
    supervisor = Supervisor(settings, list(SERVICES), log_dir, ports={n: free_port() for n in SERVICES},
                            env={"M1_RELAY_POLL_SECONDS": "0.2", "M1_LOG_LEVEL": "INFO", "M1_WINDOW_SCHEDULE": "false",
                                 "M1_SMTP_HOST": "127.0.0.1", "M1_SMTP_PORT": str(smtp_port),
                                 "M1_NOTIFICATION_RETRY_BASE_SECONDS": "0.2",
                                 "M1_NOTIFICATION_DELIVERY_POLL_SECONDS": "0.2",
                                 # the withdrawal follows the deposit at once; no daily fees or interest
                                 "M1_LEDGER_SETTLEMENT_DAYS": "0", "M1_LEDGER_DEPOSIT_HOLD_DAYS": "0",
                                 "M1_LEDGER_DAY_SCHEDULE": "false"})
    supervisor.start()
    try:
        failed = supervisor.wait_healthy(timeout=90)
        assert not failed, f"not healthy: {failed}; logs in {log_dir}"
        yield supervisor
    finally:
        supervisor.stop()
        asyncio.run(drop_database(settings.database_url))
        delete_vhost(vhost)


def new_symbol() -> str:
    return "O" + uuid.uuid4().hex[:6].upper()


async def test_deposit_orders_cancel_windows_halt_and_withdrawal_leave_the_expected_feed_and_deliveries(
        system, client, receivers):
    url, _, mailbox = receivers
    db = system.settings.database_url
    stock, halted = new_symbol(), new_symbol()
    account = f"ord-{uuid.uuid4().hex[:8]}"
    await client.call(SetPrices(prices={stock: "20.00", halted: "10.00"}))
    await client.call(OpenAccount(account_id=account))
    pie = SetPie(account_id=account, pie=PieSpec(name="two", slices=[
        {"target": 60, "symbol": stock}, {"target": 40, "symbol": halted}]))

    async def pie_set() -> bool:  # once the pie service has seen the account and the prices
        return (await client.request(pie)).ok

    await eventually(pie_set)
    await client.call(SetSettings(account_id=account, auto_invest=False))  # only the orders trade
    await client.call(SetChannels(account_id=account, webhook_url=url, webhook_secret=SECRET,
                                  email="holder@example.com"))

    async def feed() -> list[dict]:
        return (await client.call(GetFeed(account_id=account)))["entries"]

    async def feed_has(n: int):
        entries = await feed()
        return entries if len(entries) >= n else None

    async def order(order_id: str) -> dict:
        return (await client.call(GetOrder(order_id=uuid.UUID(order_id))))["order"]

    async def order_is(order_id: str, status: str):
        o = await order(order_id)
        return o if o["status"] == status else None

    # a deposit, seen by the order service (cash, pie) and the window (cash)
    await client.deposit(account, D("300.00"))
    await feed_has(1)
    await eventually(lambda: fetchval(db, 'SELECT cash = 300 FROM "order".cash WHERE account_id = $1', account))
    await eventually(lambda: fetchval(db, 'SELECT cash = 300 FROM "window".cash WHERE account_id = $1', account))
    await eventually(lambda: fetchval(db, 'SELECT true FROM "order".pies WHERE account_id = $1', account))

    # three order buys; the third is cancelled before the window
    bought = (await client.call(PlaceOrder(account_id=account, symbol=stock, side="buy", amount="100.00")))["order"]
    carried = (await client.call(PlaceOrder(account_id=account, symbol=halted, side="buy", amount="50.00")))["order"]
    dropped = (await client.call(PlaceOrder(account_id=account, symbol=stock, side="buy", amount="20.00")))["order"]
    await eventually(lambda: fetchval(db, 'SELECT count(*) = 3 FROM "window".intents WHERE account_id = $1', account))
    await client.call(CancelOrder(order_id=uuid.UUID(dropped["order_id"])))
    await eventually(lambda: order_is(dropped["order_id"], "cancelled"))

    # a window with one security halted: the halted buy carries over, the other executes
    await client.call(HaltSecurity(symbol=halted, reason="news pending"))
    first = await client.call(CloseWindow())
    await window_reconciles(db, first["window_id"])
    done = await eventually(lambda: order_is(bought["order_id"], "executed"))
    assert (done["filled_quantity"], done["filled_amount"]) == ("5.00000", "100.00")
    await eventually(lambda: order_is(carried["order_id"], "carried_over"))

    # the next window trades it
    await client.call(ResumeSecurity(symbol=halted))
    await eventually(lambda: fetchval(db, 'SELECT cash = 200 FROM "window".cash WHERE account_id = $1', account))
    second = await client.call(CloseWindow())
    await window_reconciles(db, second["window_id"])
    done = await eventually(lambda: order_is(carried["order_id"], "executed"))
    assert (done["filled_quantity"], done["filled_amount"]) == ("5.00000", "50.00")

    # a withdrawal of part of the cash left
    await client.withdraw(account, D("60.00"))

    expected = Counter({"deposit_received": 1, "order_placed": 3, "order_cancelled": 1, "intents_carried_over": 1,
                        "order_carried_over": 1, "trades_executed": 2, "order_executed": 2,
                        "withdrawal_completed": 1})
    entries = await eventually(lambda: feed_has(sum(expected.values())))
    assert Counter(e["kind"] for e in entries) == expected, " | ".join(e["message"] for e in entries)
    assert len({e["cause_id"] for e in entries}) == len(entries)
    messages = [e["message"] for e in entries]
    short = {o["order_id"]: o["order_id"][:8] for o in (bought, carried, dropped)}
    for text in [
        "Deposit of $300.00 received.",
        f"Order {short[bought['order_id']]} placed: buy $100.00 of {stock} in the next trade window.",
        f"Order {short[dropped['order_id']]} cancelled: buy $20.00 of {stock}.",
        f"Trades in {halted} wait for the next window: news pending.",
        f"Order {short[carried['order_id']]} (buy $50.00 of {halted}) waits for the next window: news pending.",
        f"Order {short[bought['order_id']]} executed: bought 5.00000 {stock} for $100.00 at $20.00.",
        f"Order {short[carried['order_id']]} executed: bought 5.00000 {halted} for $50.00 at $10.00.",
        "Withdrawal of $60.00 sent to your bank.",
    ]:
        assert text in messages, (text, messages)
    # the deposit came first and the withdrawal last
    assert (entries[0]["kind"], entries[-1]["kind"]) == ("deposit_received", "withdrawal_completed")

    # every order in exactly one final state
    orders = (await client.call(GetOrders(account_id=account)))["orders"]
    assert sorted((o["order_id"], o["status"]) for o in orders) == sorted(
        [(bought["order_id"], "executed"), (carried["order_id"], "executed"), (dropped["order_id"], "cancelled")])
    changes = await fetchval(db, """SELECT count(*) FROM "order".orders WHERE account_id = $1
                                    AND status IN ('cancelled', 'executed', 'partially_executed', 'rejected')""",
                             account)
    assert changes == 3

    # every notification delivered once on each channel: signed webhook (after one failure), email
    async def all_delivered():
        rows = (await client.call(GetDeliveries(account_id=account)))["deliveries"]
        return rows if len(rows) == 2 * len(entries) and all(r["status"] == "delivered" for r in rows) else None

    rows = await eventually(all_delivered, timeout=60)
    assert Counter(r["channel"] for r in rows) == {"webhook": len(entries), "email": len(entries)}
    assert sum(r["attempts"] for r in rows) == 2 * len(entries) + 1  # the one failed webhook attempt
    with Webhook.lock:
        accepted = dict(Webhook.accepted)
        requests = list(Webhook.requests)
    assert all(len(bodies) == 1 for bodies in accepted.values())
    delivered = {json.loads(bodies[0])["cause_id"]: json.loads(bodies[0]) for bodies in accepted.values()}
    assert set(delivered) == {e["cause_id"] for e in entries}
    assert {d["message"] for d in delivered.values()} == set(messages)
    for headers, body in requests:
        assert signature_valid(SECRET, int(headers["X-M1-Timestamp"]), body, headers["X-M1-Signature"])
    mails = [m for m in mailbox.messages if m["To"] == "holder@example.com"]
    assert sorted(m.get_content().splitlines()[0] for m in mails) == sorted(messages)
    assert len({m["Message-ID"] for m in mails}) == len(entries)
    await assert_ledger_checks_out(client)  # the audit is clean and the export passes bean-check


def m1(system, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "M1_RABBITMQ_URL": system.settings.rabbitmq_url, "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "m1.cli", *args], env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=60)


async def test_the_cli_places_an_order_with_its_deposit_lists_it_and_refuses_a_bad_one(system, client):
    db = system.settings.database_url
    stock = new_symbol()
    account = f"cli-{uuid.uuid4().hex[:8]}"
    await client.call(SetPrices(prices={stock: "25.00"}))
    await client.call(OpenAccount(account_id=account))
    pie = SetPie(account_id=account, pie=PieSpec(name="one", slices=[{"target": 100, "symbol": stock}]))
    await eventually(lambda: _ok(client, pie))
    await client.call(SetSettings(account_id=account, auto_invest=False))
    await eventually(lambda: fetchval(db, 'SELECT true FROM "order".pies WHERE account_id = $1', account))

    placed = await asyncio.to_thread(m1, system, "order", "buy", account, stock, "--amount", "50.00",
                                     "--deposit", "50.00")
    assert placed.returncode == 0, placed.stdout + placed.stderr
    assert "buy $50.00 of " + stock in placed.stdout and "deposit" in placed.stdout
    order_id = placed.stdout.split()[1].rstrip(":")

    async def sent():  # the deposit was booked: the order went to the window
        return (await client.call(GetOrder(order_id=uuid.UUID(order_id))))["order"]["waiting_for"] is None

    await eventually(sent)
    listed = await asyncio.to_thread(m1, system, "orders", account)
    assert listed.returncode == 0 and order_id in listed.stdout and "pending" in listed.stdout
    refused = await asyncio.to_thread(m1, system, "order", "sell", account, stock, "--shares", "1")
    assert refused.returncode == 1 and "the sell is larger than the holding" in refused.stdout
    both = await asyncio.to_thread(m1, system, "order", "buy", account, stock, "--amount", "1.00", "--shares", "1")
    assert both.returncode != 0 and "exactly one of --amount or --shares" in both.stdout + both.stderr
    cancelled = await asyncio.to_thread(m1, system, "order", "cancel", order_id)
    assert cancelled.returncode == 0 and "cancelled" in cancelled.stdout, cancelled.stdout
    await assert_ledger_checks_out(client)


async def _ok(client, command) -> bool:
    return (await client.request(command)).ok
