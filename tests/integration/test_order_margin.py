"""The order and margin projections against the real RabbitMQ and PostgreSQL, and a service
started the way its container starts it."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from shared.contracts import AccountFills, AccountOpened, CashChanged, Fill, Message, PositionChanged, PricesChanged
from tests.support import eventually, fetch, fetchval, fills_batch

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
OPENED_AT = datetime(2026, 11, 25, 14, 0, tzinfo=UTC)


def new_account() -> str:
    return f"acc-{uuid.uuid4().hex[:8]}"


def new_symbol() -> str:
    """A symbol no other test prices: price events reach every service's queue in the session."""
    return "Z" + uuid.uuid4().hex[:7].upper()


async def publish(bus, event: Message, message_id: str | None = None) -> str:
    message_id = message_id or str(uuid.uuid4())
    await bus.publish_raw(event.TYPE, event.model_dump_json().encode(), message_id=message_id)
    return message_id


async def handled(settings, service: str, *message_ids: str) -> None:
    """Wait until ``service`` has committed its handling of every one of ``message_ids`` (the
    inbox row is written in the same transaction as the effect). Schema names are quoted:
    ``order`` is a reserved word in SQL."""
    await eventually(lambda: fetchval(
        settings.database_url,
        f'SELECT count(DISTINCT message_id) = $2 FROM "{service}".inbox WHERE message_id = ANY($1::text[])',
        list(message_ids), len(set(message_ids))))


def opened(account: str, kind: str = "individual", plan: str = "basic") -> AccountOpened:
    return AccountOpened(account_id=account, kind=kind, plan=plan, opened_at=OPENED_AT)


def cash_changed(account: str, cash: str, version: int) -> CashChanged:
    return CashChanged(account_id=account, cash=cash, delta=cash, cause="deposit", cause_id=str(uuid.uuid4()),
                       version=version)


def position_changed(account: str, symbol: str, quantity: str, version: int) -> PositionChanged:
    return PositionChanged(account_id=account, symbol=symbol, quantity=quantity, delta=quantity, version=version)


async def margin_account(settings, account: str):
    rows = await fetch(settings.database_url,
                       "SELECT kind, plan, cash, version FROM margin.accounts WHERE account_id = $1", account)
    return rows[0] if rows else None


async def margin_positions(settings, account: str) -> dict[str, tuple[Decimal, int]]:
    rows = await fetch(settings.database_url,
                       "SELECT symbol, quantity, version FROM margin.positions WHERE account_id = $1", account)
    return {r["symbol"]: (r["quantity"], r["version"]) for r in rows}


@pytest.fixture
async def order(service_factory):
    async with service_factory("order").running() as svc:
        yield svc


@pytest.fixture
async def margin(service_factory):
    async with service_factory("margin").running() as svc:
        yield svc


# ---------------------------------------------------------------- order


async def test_order_keeps_every_opened_account(order, bus, settings):
    account = new_account()
    message_id = await publish(bus, opened(account, "roth_ira", "plus"))
    await handled(settings, "order", message_id)
    rows = await fetch(settings.database_url,
                       'SELECT kind, plan, opened_at FROM "order".accounts WHERE account_id = $1', account)
    assert [tuple(r) for r in rows] == [("roth_ira", "plus", OPENED_AT)]


async def test_order_replay_of_account_opened_changes_nothing(order, bus, settings):
    account = new_account()
    first = await publish(bus, opened(account))
    await handled(settings, "order", first)
    await publish(bus, opened(account), message_id=first)  # same message again
    again = await publish(bus, opened(account))  # same event under a new message id
    await handled(settings, "order", again)
    assert await fetchval(settings.database_url,
                          'SELECT count(*) FROM "order".accounts WHERE account_id = $1', account) == 1
    assert await fetchval(settings.database_url, 'SELECT count(*) FROM "order".inbox WHERE message_id = $1',
                          first) == 1


# ---------------------------------------------------------------- margin


async def test_margin_projects_account_cash_positions_and_prices(margin, bus, settings):
    account, stock, bond = new_account(), new_symbol(), new_symbol()
    ids = [await publish(bus, opened(account, "joint", "plus")),
           await publish(bus, cash_changed(account, "1000.00", 1)),
           await publish(bus, cash_changed(account, "400.00", 2)),
           await publish(bus, position_changed(account, stock, "2.50000", 2)),
           await publish(bus, position_changed(account, bond, "7.12345", 2)),
           await publish(bus, PricesChanged(prices={stock: "240.125000", bond: "72.5"}, as_of=OPENED_AT))]
    await handled(settings, "margin", *ids)
    row = await margin_account(settings, account)
    assert tuple(row) == ("joint", "plus", Decimal("400.00"), 2)
    assert await margin_positions(settings, account) == {stock: (Decimal("2.50000"), 2),
                                                         bond: (Decimal("7.12345"), 2)}
    prices = await fetch(settings.database_url,
                         "SELECT symbol, price FROM margin.prices WHERE symbol = ANY($1::text[])", [stock, bond])
    assert dict((r["symbol"], r["price"]) for r in prices) == {stock: Decimal("240.125"), bond: Decimal("72.5")}


async def test_margin_ignores_cash_and_positions_older_than_what_it_holds(margin, bus, settings):
    account = new_account()
    ids = [await publish(bus, opened(account)),
           await publish(bus, cash_changed(account, "75.00", 5)),
           await publish(bus, position_changed(account, "VTI", "3.00000", 5)),
           await publish(bus, cash_changed(account, "10.00", 4)),
           await publish(bus, position_changed(account, "VTI", "1.00000", 3))]
    await handled(settings, "margin", *ids)
    row = await margin_account(settings, account)
    assert (row["cash"], row["version"]) == (Decimal("75.00"), 5)
    assert await margin_positions(settings, account) == {"VTI": (Decimal("3.00000"), 5)}


async def test_margin_keeps_a_sold_out_position_at_zero_with_its_version(margin, bus, settings):
    account = new_account()
    ids = [await publish(bus, position_changed(account, "VTI", "3.00000", 1)),
           await publish(bus, position_changed(account, "VTI", "0", 2)),
           await publish(bus, position_changed(account, "VTI", "3.00000", 1))]
    await handled(settings, "margin", *ids)
    assert await margin_positions(settings, account) == {"VTI": (Decimal("0.00000"), 2)}


async def test_margin_keeps_cash_that_arrives_before_the_account_is_opened(margin, bus, settings):
    account = new_account()
    first = await publish(bus, cash_changed(account, "25.00", 1))
    await handled(settings, "margin", first)
    assert tuple(await margin_account(settings, account)) == (None, None, Decimal("25.00"), 1)
    last = await publish(bus, opened(account, "trust", "basic"))
    await handled(settings, "margin", last)
    assert tuple(await margin_account(settings, account)) == ("trust", "basic", Decimal("25.00"), 1)


async def test_margin_ignores_prices_older_than_what_it_holds(margin, bus, settings):
    symbol = new_symbol()
    first = await publish(bus, PricesChanged(prices={symbol: "10.00"}, as_of=OPENED_AT))
    stale = await publish(bus, PricesChanged(prices={symbol: "9.00"}, as_of=OPENED_AT - timedelta(minutes=1)))
    await handled(settings, "margin", first, stale)
    assert await fetchval(settings.database_url, "SELECT price FROM margin.prices WHERE symbol = $1",
                          symbol) == Decimal("10.00")
    newer = await publish(bus, PricesChanged(prices={symbol: "11.50"}, as_of=OPENED_AT + timedelta(minutes=1)))
    await handled(settings, "margin", newer)
    assert await fetchval(settings.database_url, "SELECT price FROM margin.prices WHERE symbol = $1",
                          symbol) == Decimal("11.50")


async def test_margin_replay_of_any_event_changes_nothing(margin, bus, settings):
    account, symbol = new_account(), new_symbol()
    events = [opened(account), cash_changed(account, "300.00", 1), position_changed(account, symbol, "1.50000", 1),
              PricesChanged(prices={symbol: "200.00"}, as_of=OPENED_AT)]
    ids = [await publish(bus, e) for e in events]
    await handled(settings, "margin", *ids)

    async def state():
        return (tuple(await margin_account(settings, account)), await margin_positions(settings, account),
                await fetchval(settings.database_url, "SELECT price FROM margin.prices WHERE symbol = $1", symbol))

    before = await state()
    for event, message_id in zip(events, ids, strict=True):
        await publish(bus, event, message_id=message_id)
    # A reused id with another body is refused as a conflict, never applied.
    await publish(bus, cash_changed(account, "50.00", 2), message_id=ids[1])
    await publish(bus, PricesChanged(prices={symbol: "1.00"}, as_of=OPENED_AT + timedelta(days=1)), message_id=ids[3])
    async def refusals():
        rows = await fetch(settings.database_url,
                           "SELECT message_id, reason FROM margin.dead_letters WHERE message_id = ANY($1::text[])",
                           [ids[1], ids[3]])
        return rows if len(rows) == 2 else None

    refused = await eventually(refusals)
    # Markers on both queues: what was published before them has been handled.
    markers = [await publish(bus, cash_changed(account + "-other", "1.00", 1)),
               await publish(bus, PricesChanged(prices={new_symbol(): "1.00"}, as_of=OPENED_AT))]
    await handled(settings, "margin", *markers)
    assert await state() == before
    assert all("conflict" in r["reason"] for r in refused)
    counts = await fetch(settings.database_url,
                         "SELECT message_id, count(*) AS n FROM margin.inbox WHERE message_id = ANY($1::text[]) "
                         "GROUP BY message_id", ids)
    assert {r["message_id"]: r["n"] for r in counts} == dict.fromkeys(ids, 1)


async def test_margin_takes_every_account_of_a_fills_batch_at_its_version(margin, bus, settings):
    """One ``ledger.fills.booked`` batch of two accounts: each one's cash and the positions of
    its fills are set at its own version; positions it did not trade are left alone."""
    buyer, seller = new_account(), new_account()
    stock, bond = new_symbol(), new_symbol()
    ids = [await publish(bus, opened(buyer)), await publish(bus, opened(seller)),
           await publish(bus, cash_changed(buyer, "500.00", 1)), await publish(bus, cash_changed(seller, "0.00", 1)),
           await publish(bus, position_changed(seller, bond, "4.00000", 1)),
           await publish(bus, position_changed(seller, stock, "1.00000", 1)),
           await publish(bus, PricesChanged(prices={stock: "100.00", bond: "50.00"}, as_of=OPENED_AT))]
    await handled(settings, "margin", *ids)
    window = uuid.uuid4()

    def part(account: str, symbol: str, side: str, quantity: str, amount: str, cash: str,
             positions: dict[str, str]) -> AccountFills:
        fill = Fill(intent_id=uuid.uuid4(), account_id=account, symbol=symbol, side=side, quantity=quantity,
                    amount=amount, price="100.00" if symbol == stock else "50.00")
        return AccountFills(account_id=account, window_id=window, fills=[fill], cash=cash, positions=positions,
                            version=2, booked_at=OPENED_AT)

    batch = fills_batch(part(buyer, stock, "buy", "2.00000", "200.00", "300.00", {stock: "2.00000"}),
                        part(seller, bond, "sell", "4.00000", "200.00", "200.00", {stock: "1.00000"}))
    await handled(settings, "margin", await publish(bus, batch))
    assert tuple(await margin_account(settings, buyer)) == ("individual", "basic", Decimal("300.00"), 2)
    assert tuple(await margin_account(settings, seller)) == ("individual", "basic", Decimal("200.00"), 2)
    assert await margin_positions(settings, buyer) == {stock: (Decimal("2.00000"), 2)}
    assert await margin_positions(settings, seller) == {bond: (Decimal("0.00000"), 2), stock: (Decimal("1.00000"), 1)}


# ---------------------------------------------------------------- as a process


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_health(port: int) -> tuple[int, dict] | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")
    except OSError:
        return None


def test_order_service_process_reports_health_and_stops_cleanly_on_sigterm(settings):
    port = free_port()
    env = {**os.environ, "M1_RABBITMQ_URL": settings.rabbitmq_url, "M1_DATABASE_URL": settings.database_url,
           "M1_HTTP_PORT": str(port), "M1_LOG_LEVEL": "WARNING"}
    proc = subprocess.Popen([sys.executable, "-m", "services.order"], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        health = None
        while time.monotonic() < deadline and proc.poll() is None:
            health = get_health(port)
            if health and health[0] == 200:
                break
            time.sleep(0.2)
        assert health is not None and health[0] == 200, (health, proc.poll())
        assert health[1] == {"status": "ok", "broker": True, "database": True}
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        output = proc.stdout.read().decode(errors="replace")
        proc.stdout.close()
    assert "Traceback" not in output, output
