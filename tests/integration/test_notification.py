"""The notification service against the real RabbitMQ and PostgreSQL; the ledger's events are
published by the test itself."""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from prometheus_client import REGISTRY

from shared.contracts import (
    AccountFills,
    DepositBooked,
    Fill,
    FillsBooked,
    FundingRejected,
    GetFeed,
    Message,
    WithdrawalBooked,
)
from tests.support import eventually, fetchval, fills_batch

pytestmark = pytest.mark.integration

D = Decimal
AT = datetime(2026, 11, 25, 14, 0, tzinfo=UTC)


class Captured(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
async def notification(service_factory):
    async with service_factory("notification").running() as svc:
        yield svc


@pytest.fixture
def delivered():
    """Every line written to the log delivery channel during the test."""
    handler = Captured()
    logger = logging.getLogger("m1.notification.deliveries")
    logger.addHandler(handler)
    yield handler.records
    logger.removeHandler(handler)


async def publish(bus, event: Message, message_id: str | None = None) -> str:
    message_id = message_id or str(uuid.uuid4())
    await bus.publish_json(event.TYPE, event.model_dump(mode="json"), message_id=message_id)
    return message_id


def duplicates() -> float:
    """How many events the notification service skipped as already handled (this process)."""
    return sum(REGISTRY.get_sample_value("m1_messages_total", {"service": "notification", "queue": "notification.events",
                                                               "type": t, "outcome": "duplicate"}) or 0
               for t in (DepositBooked.TYPE, FillsBooked.TYPE))


async def _true(value: bool) -> bool:
    return value


async def feed(bus, account: str, n: int, **kw) -> list[dict] | None:
    reply = await bus.request(GetFeed(account_id=account, **kw))
    assert reply.ok, reply
    entries = reply.result["entries"]
    return entries if len(entries) >= n else None


async def test_deposits_and_trades_reach_the_feed_and_the_log_once(notification, bus, settings, delivered):
    account = f"note-{uuid.uuid4().hex[:8]}"
    deposit = DepositBooked(account_id=account, deposit_id=uuid.uuid4(), amount=D("100.00"), cash=D("100.00"),
                            booked_at=AT)
    window = uuid.uuid4()
    fills = fills_batch(AccountFills(
        account_id=account, window_id=window, cash=D("0.00"), positions={"VTI": D("0.23718")}, version=2,
        booked_at=AT, fills=[Fill(intent_id=uuid.uuid4(), account_id=account, symbol="VTI", side="buy",
                                  quantity=D("0.23718"), amount=D("60.00"), price=D("252.97")),
                             Fill(intent_id=uuid.uuid4(), account_id=account, symbol="BND", side="buy",
                                  quantity=D("0.55172"), amount=D("40.00"), price=D("72.50"))]))
    deposit_id = await publish(bus, deposit)
    await eventually(lambda: feed(bus, account, 1))  # a queue's messages may be handled concurrently
    fills_id = await publish(bus, fills)

    entries = await eventually(lambda: feed(bus, account, 2))
    assert [(e["kind"], e["message"], e["cause_id"]) for e in entries] == [
        ("deposit_received", "Deposit of $100.00 received.", deposit_id),
        ("trades_executed", f"Trades executed in window {str(window)[:8]}: bought 0.23718 VTI for $60.00 at $252.97; "
                            "bought 0.55172 BND for $40.00 at $72.50.", f"{fills_id}:{account}"),
    ]
    assert entries[0]["data"]["amount"] == "100.00" and len(entries[1]["data"]["fills"]) == 2

    # The relay re-sends both (same message ids): nothing is added, nothing delivered again.
    before = duplicates()
    await publish(bus, deposit, message_id=deposit_id)
    await publish(bus, fills, message_id=fills_id)
    await eventually(lambda: _true(duplicates() >= before + 2))
    marker = await publish(bus, WithdrawalBooked(account_id=account, withdrawal_id=uuid.uuid4(), amount=D("5.00"),
                                                 cash=D("95.00"), booked_at=AT))
    entries = await eventually(lambda: feed(bus, account, 3))
    assert [e["cause_id"] for e in entries] == [deposit_id, f"{fills_id}:{account}", marker]
    assert entries[2]["message"] == "Withdrawal of $5.00 sent to your bank."
    assert await fetchval(settings.database_url, "SELECT count(*) FROM notification.feed WHERE account_id = $1",
                          account) == 3

    mine = [r for r in delivered if getattr(r, "account_id", None) == account]
    assert [(r.levelno, r.kind, r.getMessage()) for r in mine] == [
        (logging.INFO, e["kind"], e["message"]) for e in entries
    ]


async def test_a_fills_batch_tells_every_account_in_it_once(notification, bus, settings, delivered):
    """One ``ledger.fills.booked`` batch of two accounts: one ``trades_executed`` each, keyed
    by the message and the account; the batch again adds and delivers nothing."""
    first, second = sorted(f"note-{uuid.uuid4().hex[:8]}" for _ in range(2))
    window = uuid.uuid4()

    def part(account: str, quantity: str, amount: str) -> AccountFills:
        return AccountFills(account_id=account, window_id=window, cash=D("0.00"), positions={"VTI": D(quantity)},
                            version=2, booked_at=AT,
                            fills=[Fill(intent_id=uuid.uuid4(), account_id=account, symbol="VTI", side="buy",
                                        quantity=D(quantity), amount=D(amount), price=D("250.00"))])

    batch = fills_batch(part(second, "0.40000", "100.00"), part(first, "0.24000", "60.00"))
    message_id = await publish(bus, batch)
    told = {}
    for account, words in ((first, "bought 0.24000 VTI for $60.00 at $250.00"),
                           (second, "bought 0.40000 VTI for $100.00 at $250.00")):
        (entry,) = await eventually(lambda account=account: feed(bus, account, 1))
        assert (entry["kind"], entry["message"], entry["cause_id"]) == (
            "trades_executed", f"Trades executed in window {str(window)[:8]}: {words}.", f"{message_id}:{account}")
        told[account] = entry

    before = duplicates()
    await publish(bus, batch, message_id=message_id)
    await eventually(lambda: _true(duplicates() >= before + 1))
    assert await fetchval(settings.database_url, "SELECT count(*) FROM notification.feed WHERE account_id = ANY($1)",
                          [first, second]) == 2
    assert sorted((r.account_id, r.getMessage()) for r in delivered if getattr(r, "account_id", None) in told) == [
        (account, entry["message"]) for account, entry in sorted(told.items())]


async def test_a_refused_deposit_is_told_with_its_reason(notification, bus):
    account = f"note-{uuid.uuid4().hex[:8]}"
    await publish(bus, FundingRejected(account_id=account, funding_type="deposit", funding_id=str(uuid.uuid4()),
                                       amount="1.005", reason="amount: at most 2 decimal places allowed"))
    (entry,) = await eventually(lambda: feed(bus, account, 1))
    assert entry["kind"] == "funding_rejected"
    assert entry["message"] == "Your deposit was refused: amount: at most 2 decimal places allowed"


async def test_the_feed_reads_back_the_latest_entries_after_since_oldest_first(notification, bus):
    account = f"note-{uuid.uuid4().hex[:8]}"
    for amount in ("1.00", "2.00", "3.00"):
        await publish(bus, DepositBooked(account_id=account, deposit_id=uuid.uuid4(), amount=D(amount),
                                         cash=D(amount), booked_at=AT))
        await eventually(lambda amount=amount: _has(bus, account, f"Deposit of ${amount} received."))
    everything = await feed(bus, account, 3)
    assert [e["message"] for e in everything] == [f"Deposit of ${a} received." for a in ("1.00", "2.00", "3.00")]
    latest = await feed(bus, account, 1, limit=2)
    assert [e["id"] for e in latest] == [e["id"] for e in everything[1:]]
    after_first = await feed(bus, account, 0, since=datetime.fromisoformat(everything[0]["created_at"]))
    assert [e["id"] for e in after_first] == [e["id"] for e in everything[1:]]
    assert await feed(bus, "nobody-" + account, 0) == []


async def _has(bus, account, message):
    return any(e["message"] == message for e in await feed(bus, account, 0))
