"""The ledger against the real RabbitMQ and PostgreSQL."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from shared.contracts import (DrawLoan, Execution, Fill, FillsAllocated, FillsBatch, GetAccount, HoldWindowCash,
                              OpenAccount, PricesChanged, RepayLoan, WithdrawalPending)
from tests.integration.test_ledger_lots import book_fills, open_funded
from tests.integration.test_order_margin import handled, new_symbol, publish
from tests.support import dlq_messages, eventually, fetch, fetchval

pytestmark = pytest.mark.integration


def deposit_body(account_id: str, amount: str = "100.00", deposit_id: str | None = None) -> dict:
    return {"deposit_id": deposit_id or str(uuid.uuid4()), "account_id": account_id, "amount": amount,
            "currency": "USD", "received_at": "2026-11-25T14:00:00+00:00"}


async def cash(bus, account_id: str) -> Decimal:
    reply = await bus.request(GetAccount(account_id=account_id))
    assert reply.ok, reply
    return Decimal(reply.result["cash"])


@pytest.fixture
async def ledger(service_factory):
    async with service_factory("ledger").running() as svc:
        yield svc


async def test_deposit_is_booked_once_and_balances(ledger, bus, settings):
    account = f"acc-{uuid.uuid4().hex[:8]}"
    assert (await bus.request(OpenAccount(account_id=account))).ok
    body = deposit_body(account, "250.10")
    for _ in range(3):  # the bank delivers the same event three times
        await bus.publish_json("funding.deposit.received", body, message_id=body["deposit_id"])
    await eventually(lambda: fetchval(settings.database_url,
                                      "SELECT count(*) FROM ledger.inbox WHERE message_id = $1", body["deposit_id"]))
    await eventually(lambda: fetchval(settings.database_url, "SELECT count(*) = 0 FROM ledger.outbox"))
    assert await cash(bus, account) == Decimal("250.10")
    entries = await fetchval(settings.database_url,
                             "SELECT count(*) FROM ledger.entries WHERE reference = $1", body["deposit_id"])
    assert entries == 1
    totals = await fetch(settings.database_url, "SELECT asset, sum(amount) AS t FROM ledger.postings GROUP BY asset")
    assert all(r["t"] == 0 for r in totals)


def withdrawal_body(account_id: str, amount: str) -> dict:
    wid = str(uuid.uuid4())
    return {"withdrawal_id": wid, "account_id": account_id, "amount": amount, "currency": "USD",
            "requested_at": "2026-11-25T15:00:00+00:00"}


_STATUS = "SELECT status FROM ledger.pending_withdrawals WHERE withdrawal_id = $1"


async def held_withdrawal(bus, settings, account_id: str, amount: str) -> dict:
    """Request a withdrawal the account's cash does not cover and wait until it is held."""
    body = withdrawal_body(account_id, amount)
    await bus.publish_json("funding.withdrawal.requested", body, message_id=body["withdrawal_id"])
    assert await eventually(lambda: fetchval(settings.database_url, _STATUS,
                                             uuid.UUID(body["withdrawal_id"]))) == "pending"
    return body


async def funded_account(bus, settings, amount: str) -> str:
    """A new account whose deposit of ``amount`` is booked."""
    account = f"acc-{uuid.uuid4().hex[:8]}"
    assert (await bus.request(OpenAccount(account_id=account))).ok
    dep = deposit_body(account, amount)
    await bus.publish_json("funding.deposit.received", dep, message_id=dep["deposit_id"])
    await eventually(lambda: fetchval(settings.database_url, "SELECT count(*) FROM ledger.funding "
                                                             "WHERE account_id = $1", account))
    return account


async def test_a_withdrawal_beyond_cash_is_held_and_paid_after_the_accounts_fills(ledger, bus, settings):
    account = await funded_account(bus, settings, "40.00")
    body = withdrawal_body(account, "40.01")
    for _ in range(2):
        await bus.publish_json("funding.withdrawal.requested", body, message_id=body["withdrawal_id"])
    wid = uuid.UUID(body["withdrawal_id"])
    assert await eventually(lambda: fetchval(settings.database_url, _STATUS, wid)) == "pending"
    assert await fetchval(settings.database_url, "SELECT count(*) FROM ledger.pending_withdrawals "
                                                 "WHERE account_id = $1", account) == 1
    assert await cash(bus, account) == Decimal("40.00")

    # Fills booked while the cash is still short pay nothing; once it covers the amount, the
    # transaction that books them pays it (settlement days are 0 in the tests).
    symbol = f"W{uuid.uuid4().hex[:6].upper()}"
    one = Decimal("1.00000")
    for side, amount in (("buy", Decimal("10.00")), ("sell", Decimal("20.00"))):
        window_id = uuid.uuid4()
        fill = (uuid.uuid4(), account, symbol, side, format(one, "f"), format(amount, "f"), format(amount, "f"))
        batch = FillsBatch(window_id=window_id, batch=0, batches=1, fills=[fill],
                           executions=[Execution(symbol=symbol, side=side, quantity=one, price=amount, amount=amount)],
                           residues=[])
        await publish(bus, batch)
        await eventually(lambda: fetchval(settings.database_url, "SELECT count(*) FROM ledger.entries "
                                                                 "WHERE reference = $1", f"{window_id}:0"))
        if side == "buy":
            assert await fetchval(settings.database_url, _STATUS, wid) == "pending"
            assert await cash(bus, account) == Decimal("30.00")
    assert await fetchval(settings.database_url, _STATUS, wid) == "paid"
    assert await cash(bus, account) == Decimal("9.99")
    assert await fetchval(settings.database_url, "SELECT kind FROM ledger.funding WHERE funding_id = $1",
                          wid) == "withdrawal"


async def test_a_later_withdrawal_waits_behind_a_held_one_instead_of_taking_its_cash(ledger, bus, settings):
    account = await funded_account(bus, settings, "100.00")
    await held_withdrawal(bus, settings, account, "500.00")
    await held_withdrawal(bus, settings, account, "100.00")
    assert await cash(bus, account) == Decimal("100.00")  # the $100 stays for the $500 withdrawal


async def test_a_held_withdrawal_refused_by_the_pie_is_rejected_with_its_reason(ledger, bus, settings):
    account = f"acc-{uuid.uuid4().hex[:8]}"
    assert (await bus.request(OpenAccount(account_id=account))).ok
    body = withdrawal_body(account, "10.00")
    await bus.publish_json("funding.withdrawal.requested", body, message_id=body["withdrawal_id"])
    wid = uuid.UUID(body["withdrawal_id"])
    await eventually(lambda: fetchval(settings.database_url, "SELECT count(*) FROM ledger.pending_withdrawals "
                                                             "WHERE withdrawal_id = $1", wid))
    channel = await bus.connection.channel()
    told = await channel.declare_queue(exclusive=True, auto_delete=True)
    await told.bind("m1.events", routing_key="ledger.funding.rejected")
    refusal = {"account_id": account, "withdrawal_id": body["withdrawal_id"], "amount": "10.00",
               "reason": "withdrawal of $10.00 exceeds the withdrawable value $0.00"}
    await bus.publish_json("pie.withdrawal.refused", refusal, message_id=str(uuid.uuid4()))
    message = await eventually(lambda: told.get(fail=False, no_ack=True))
    assert json.loads(message.body) | {} == {"account_id": account, "funding_type": "withdrawal",
                                             "funding_id": body["withdrawal_id"], "amount": "10.00",
                                             "reason": refusal["reason"]}
    await channel.close()
    row = await eventually(lambda: fetch(settings.database_url, "SELECT status, reason FROM ledger.pending_withdrawals "
                                                                "WHERE withdrawal_id = $1 AND status = 'rejected'",
                                         wid))
    assert row[0]["reason"] == refusal["reason"]
    assert await fetchval(settings.database_url, "SELECT count(*) FROM ledger.funding WHERE funding_id = $1", wid) == 0


BAD_BODIES = {
    "malformed-json": b"{not json",
    "missing-field": json.dumps({"account_id": "x", "amount": "1.00", "currency": "USD"}).encode(),
    "negative": None,
    "zero": None,
    "three-decimals": None,
    "wrong-currency": None,
    "unknown-account": None,
}


@pytest.mark.parametrize("case", sorted(BAD_BODIES))
async def test_bad_funding_input_is_dead_lettered_with_reason(ledger, bus, settings, case):
    account = f"acc-{uuid.uuid4().hex[:8]}"
    assert (await bus.request(OpenAccount(account_id=account))).ok
    body = deposit_body(account if case != "unknown-account" else "nobody-" + account)
    body.update({"negative": {"amount": "-5.00"}, "zero": {"amount": "0.00"}, "three-decimals": {"amount": "1.005"},
                 "wrong-currency": {"currency": "EUR"}}.get(case, {}))
    raw = BAD_BODIES[case] or json.dumps(body).encode()
    message_id = body["deposit_id"]
    await bus.publish_raw("funding.deposit.received", raw, message_id=message_id)
    reason = await eventually(lambda: fetchval(settings.database_url,
                                               "SELECT reason FROM ledger.dead_letters WHERE message_id = $1",
                                               message_id))
    expected = {"malformed-json": "invalid", "missing-field": "deposit_id", "negative": "positive",
                "zero": "positive", "three-decimals": "2 decimal places", "wrong-currency": "currency",
                "unknown-account": "unknown account"}[case]
    assert expected in reason
    dead = await eventually(lambda: dlq_messages(settings.rabbitmq_url, "ledger.dlq"))
    assert any(m.message_id == message_id and expected in m.headers["x-reason"] for m in dead)
    assert await cash(bus, account) == Decimal("0.00")
    # the consumer is still alive: a good deposit after the bad one is booked
    good = deposit_body(account, "1.00")
    await bus.publish_json("funding.deposit.received", good, message_id=good["deposit_id"])
    assert await eventually(lambda: _cash_is(bus, account, Decimal("1.00")))


async def _cash_is(bus, account, expected):
    return await cash(bus, account) == expected


async def test_same_deposit_id_with_a_different_amount_is_refused_as_a_conflict(ledger, bus, settings):
    account = f"acc-{uuid.uuid4().hex[:8]}"
    assert (await bus.request(OpenAccount(account_id=account))).ok
    original = deposit_body(account, "10.00")
    await bus.publish_json("funding.deposit.received", original, message_id=original["deposit_id"])
    await eventually(lambda: _cash_is(bus, account, Decimal("10.00")))
    altered = {**original, "amount": "99.00"}
    await bus.publish_json("funding.deposit.received", altered, message_id=original["deposit_id"])
    reason = await eventually(lambda: fetchval(settings.database_url,
                                               "SELECT reason FROM ledger.dead_letters WHERE message_id = $1",
                                               original["deposit_id"]))
    assert "conflict" in reason
    assert await cash(bus, account) == Decimal("10.00")


async def test_deposits_keep_flowing_after_the_database_drops_every_connection(ledger, bus, settings):
    account = f"acc-{uuid.uuid4().hex[:8]}"
    assert (await bus.request(OpenAccount(account_id=account))).ok
    killed = await fetchval(settings.database_url,
                            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                            "WHERE application_name = 'm1-ledger' AND datname = current_database()")
    assert killed >= 1
    body = deposit_body(account, "7.77")
    await bus.publish_json("funding.deposit.received", body, message_id=body["deposit_id"])
    assert await eventually(lambda: _cash_is(bus, account, Decimal("7.77")))


async def test_deposits_keep_flowing_after_the_broker_drops_every_connection(ledger, bus, settings):
    import asyncio

    from tests.support import rabbitmqctl

    account = f"acc-{uuid.uuid4().hex[:8]}"
    assert (await bus.request(OpenAccount(account_id=account))).ok
    vhost = settings.rabbitmq_url.rsplit("/", 1)[1]
    from urllib.parse import unquote

    rabbitmqctl("close_all_connections", "-p", unquote(vhost), "test: broker drops connections")
    await asyncio.sleep(1.0)
    async with type(bus)(settings.rabbitmq_url) as fresh:
        body = deposit_body(account, "3.33")
        await fresh.publish_json("funding.deposit.received", body, message_id=body["deposit_id"])
        assert await eventually(lambda: _cash_is(fresh, account, Decimal("3.33")), timeout=30)


async def test_a_held_withdrawal_is_paid_when_a_deposit_covers_it(ledger, bus, settings):
    account = f"acc-{uuid.uuid4().hex[:8]}"
    assert (await bus.request(OpenAccount(account_id=account))).ok
    held = await held_withdrawal(bus, settings, account, "50.00")
    dep = deposit_body(account, "80.00")
    await bus.publish_json("funding.deposit.received", dep, message_id=dep["deposit_id"])
    assert await eventually(lambda: _paid(settings, held))
    assert await cash(bus, account) == Decimal("30.00")


async def _paid(settings, withdrawal: dict) -> bool:
    return await fetchval(settings.database_url, "SELECT status = 'paid' FROM ledger.pending_withdrawals "
                                                 "WHERE withdrawal_id = $1", uuid.UUID(withdrawal["withdrawal_id"]))


async def test_a_windows_cash_hold_answers_what_each_account_has_and_is_released(ledger, bus, settings):
    """``ledger.window.hold``: each account's hold is at most its cash less its other windows'
    holds; the answer lists the accounts short of what the window asked (an unknown account
    has nothing); asked again, the same answer and holds; released by ``ledger.window.release``."""
    from shared.contracts import HoldWindowCash, ReleaseWindowCash, WindowCashHeld

    url = settings.database_url
    a, b, unknown = (f"acc-{uuid.uuid4().hex[:8]}" for _ in range(3))
    for account, amount in ((a, "100.00"), (b, "50.00")):
        assert (await bus.request(OpenAccount(account_id=account))).ok
        body = deposit_body(account, amount)
        await bus.publish_raw("funding.deposit.received", json.dumps(body).encode(), message_id=body["deposit_id"])
    await eventually(lambda: fetchval(url, "SELECT count(*) = 2 FROM ledger.funding WHERE account_id = ANY($1)",
                                      [a, b]))
    queue = await bus.channel.declare_queue(exclusive=True, auto_delete=True)
    await queue.bind(bus.events, routing_key=WindowCashHeld.TYPE)

    async def answer(window_id) -> dict:
        while True:
            msg = await eventually(lambda: queue.get(fail=False, no_ack=True))
            held = WindowCashHeld.model_validate_json(msg.body)
            if held.window_id == window_id:
                return held.short

    earlier, window = uuid.uuid4(), uuid.uuid4()
    await bus.publish_raw(HoldWindowCash.TYPE, HoldWindowCash(window_id=earlier, holds=[(a, "30.00")])
                          .model_dump_json().encode(), message_id=str(uuid.uuid4()), exchange="m1.commands")
    assert await answer(earlier) == {}
    hold = HoldWindowCash(window_id=window, holds=[(a, "80.00"), (b, "50.00"), (unknown, "10.00")])
    for _ in range(2):  # the second time under another message id: a replay
        await bus.publish_raw(hold.TYPE, hold.model_dump_json().encode(), message_id=str(uuid.uuid4()),
                              exchange="m1.commands")
        assert await answer(window) == {a: Decimal("70.00"), unknown: Decimal("0.00")}
    holds = await fetch(url, "SELECT window_id, account_id, amount FROM ledger.window_holds WHERE account_id = ANY($1)",
                        [a, b, unknown])
    assert sorted((str(r["window_id"]), r["account_id"], r["amount"]) for r in holds) == sorted([
        (str(earlier), a, Decimal("30.00")), (str(window), a, Decimal("70.00")), (str(window), b, Decimal("50.00"))])

    release = str(uuid.uuid4())
    await bus.publish_raw(ReleaseWindowCash.TYPE, ReleaseWindowCash(window_id=earlier).model_dump_json().encode(),
                          message_id=release, exchange="m1.commands")
    await eventually(lambda: fetchval(url, "SELECT count(*) FROM ledger.inbox WHERE message_id = $1", release))
    assert await fetchval(url, "SELECT count(*) FROM ledger.window_holds WHERE window_id = $1", earlier) == 0
    assert await fetchval(url, "SELECT count(*) FROM ledger.window_holds WHERE window_id = $1", window) == 2


# ---------------------------------------------------------------- margin loans and spoken-for cash


async def loan_of(settings, account: str) -> Decimal:
    return -(await fetchval(settings.database_url, "SELECT amount FROM ledger.balances WHERE book = $1",
                            f"customer:{account}:loan"))


async def invested_with_a_loan(bus, settings, loan: str) -> tuple[str, str]:
    """An account that bought 10 shares at $100 of a fresh symbol (priced at $100 in the
    ledger) with a $1,000 deposit, then drew ``loan``: its cash is the loan."""
    account, symbol = await open_funded(bus, settings, "1000.00"), new_symbol()
    await book_fills(bus, settings, (account, symbol, "buy", "10", "100"))
    prices = PricesChanged(prices={symbol: Decimal("100")}, as_of=datetime.now(UTC))
    await handled(settings, "ledger", await publish(bus, prices))
    reply = await bus.request(DrawLoan(account_id=account, loan_id=uuid.uuid4(), amount=Decimal(loan)))
    assert reply.ok, reply
    assert await cash(bus, account) == Decimal(loan)
    return account, symbol


async def test_a_withdrawal_is_refused_when_with_those_already_held_it_would_push_the_loan_above_forty_percent(
        ledger, bus, settings):
    account, symbol = await invested_with_a_loan(bus, settings, "300.00")
    # value $1,300, loan $300: $500 alone leaves $800 (the loan 37.5% of it): held for sells
    first, second = await held_withdrawal(bus, settings, account, "500.00"), withdrawal_body(account, "500.00")
    # the second counts the first as gone: it would leave $300 for a $300 loan
    await bus.publish_json("funding.withdrawal.requested", second, message_id=second["withdrawal_id"])
    reason = await eventually(lambda: fetchval(settings.database_url,
                                               "SELECT reason FROM ledger.dead_letters WHERE message_id = $1",
                                               second["withdrawal_id"]))
    assert "above 40% of the account's value; at most 50.00 can be withdrawn" in reason
    assert await fetchval(settings.database_url, _STATUS, uuid.UUID(second["withdrawal_id"])) is None

    # the pie sells everything: the first is paid, the loan stays within 40% of what is left
    await book_fills(bus, settings, (account, symbol, "sell", "10", "100"))
    assert await eventually(lambda: _paid(settings, first))
    assert await cash(bus, account) == Decimal("800.00")
    assert await loan_of(settings, account) == Decimal("300.00")


async def test_a_held_withdrawal_is_short_only_of_the_cash_and_comes_before_a_later_windows_buys(
        ledger, bus, settings):
    from shared.contracts import WindowCashHeld

    account = await funded_account(bus, settings, "1020.00")
    channel = await bus.connection.channel()
    announced = await channel.declare_queue(exclusive=True, auto_delete=True)
    await announced.bind(bus.events, routing_key=WithdrawalPending.TYPE)
    await announced.bind(bus.events, routing_key=WindowCashHeld.TYPE)

    async def hold(amount: str) -> tuple[Decimal, dict]:
        """The amount held for a new window's buys, and the ledger's answer (``short``)."""
        window_id = uuid.uuid4()
        await bus.publish_raw(HoldWindowCash.TYPE, HoldWindowCash(window_id=window_id, holds=[(account, amount)])
                              .model_dump_json().encode(), message_id=str(uuid.uuid4()), exchange="m1.commands")
        message = await eventually(lambda: announced.get(fail=False, no_ack=True))
        answer = WindowCashHeld.model_validate_json(message.body)
        assert answer.window_id == window_id
        return await fetchval(settings.database_url, "SELECT amount FROM ledger.window_holds WHERE window_id = $1",
                              window_id), answer.short

    assert await hold("1000.00") == (Decimal("1000.00"), {})  # a window frozen before the withdrawal
    await held_withdrawal(bus, settings, account, "50.00")
    message = await eventually(lambda: announced.get(fail=False, no_ack=True))
    pending = WithdrawalPending.model_validate_json(message.body)
    assert (pending.cash, pending.shortfall) == (Decimal("20.00"), Decimal("30.00"))  # the frozen buys come first
    # A window frozen after it holds nothing for its buys, and is told the withdrawal claims
    # 30.00 beyond the cash: its sells' proceeds pay that before any buy. Asked 0 (its sells
    # pay for its buys), it is told the same.
    assert await hold("10.00") == (Decimal("0.00"), {account: Decimal("-30.00")})
    assert await hold("0.00") == (Decimal("0.00"), {account: Decimal("-30.00")})
    await channel.close()


async def test_a_repayment_spends_only_the_cash_not_held_for_a_windows_buys(ledger, bus, settings):
    account, _ = await invested_with_a_loan(bus, settings, "500.00")
    window, message_id = uuid.uuid4(), str(uuid.uuid4())
    await bus.publish_raw(HoldWindowCash.TYPE, HoldWindowCash(window_id=window, holds=[(account, "300.00")])
                          .model_dump_json().encode(), message_id=message_id, exchange="m1.commands")
    await handled(settings, "ledger", message_id)

    reply = await bus.request(RepayLoan(account_id=account, repayment_id=uuid.uuid4(), amount=Decimal("500.00")))
    assert not reply.ok
    assert "requested 500.00, cash 500.00 of which 300.00 is held for withdrawals and trade windows" in reply.reason
    reply = await bus.request(RepayLoan(account_id=account, repayment_id=uuid.uuid4(), amount=Decimal("200.00")))
    assert reply.ok and reply.result["loan"] == "300.00" and reply.result["cash"] == "300.00"

    # the window's buys spend the $300 held for them: the cash never goes below zero
    other = new_symbol()
    fill = Fill(intent_id=uuid.uuid4(), account_id=account, symbol=other, side="buy", quantity=Decimal("3"),
                price=Decimal("100"), amount=Decimal("300.00"))
    execution = Execution(symbol=other, side="buy", quantity=Decimal("3"), price=Decimal("100"),
                          amount=Decimal("300.00"))
    fills = FillsAllocated(window_id=window, executions=[execution], fills=[fill], residues=[])
    await handled(settings, "ledger", await publish(bus, fills))
    assert await cash(bus, account) == Decimal("0.00")
    assert await loan_of(settings, account) == Decimal("300.00")
