"""Margin through the real services (ledger, margin, notification on RabbitMQ and PostgreSQL):
borrowing and its refusals, the loan booked balanced, calls issued by a price tick and met
by a deposit, liquidation at the deadline and under the hard floor with the liquidation's
own proceeds repaying the loan (the pie's answer and the window's fills published by the
test), repayments, the withdrawal limit, interest, and the set-based watch."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal as D

import pytest

from services.margin import domain, store
from shared.contracts import (
    AccrueInterest,
    BorrowMargin,
    CashRaising,
    CheckCalls,
    DepositReceived,
    Execution,
    Fill,
    FillsAllocated,
    GetFeed,
    GetMarginStatus,
    IntentsRejected,
    OpenAccount,
    PricesChanged,
    RepayLoan,
    SetSecurityRequirement,
    WithdrawalRequested,
)
from tests.integration.test_ledger_lots import book_fills as trade
from tests.integration.test_order_margin import handled, new_symbol, publish
from tests.support import eventually, fetch, fetchval

pytestmark = pytest.mark.integration
RULES = domain.Rules()


@pytest.fixture
async def services(service_factory, topology_declared):
    from services.ledger.app import create_service as ledger_service
    from services.margin.app import create_service as margin_service
    from services.notification.app import create_service as notification_service

    settings = topology_declared.model_copy(update={"ledger_day_schedule": False, "margin_schedule": False})
    async with ledger_service(settings).running() as ledger, margin_service(settings).running() as margin, \
            notification_service(settings).running() as notification:
        yield ledger, margin, notification


async def set_prices(bus, settings, prices: dict[str, str]) -> None:
    """A price tick, as the market publishes it; waits for the margin service to apply it."""
    event = PricesChanged(prices={s: D(p) for s, p in prices.items()}, as_of=datetime.now(UTC))
    message_id = await publish(bus, event)
    await handled(settings, "margin", message_id)
    await handled(settings, "ledger", message_id)


async def deposit(bus, settings, account: str, amount: str) -> None:
    event = DepositReceived(deposit_id=uuid.uuid4(), account_id=account, amount=D(amount), currency="USD",
                            received_at=datetime.now(UTC))
    await handled(settings, "ledger", await publish(bus, event, str(event.deposit_id)))


async def status(bus, account: str) -> dict:
    reply = await bus.request(GetMarginStatus(account_id=account))
    assert reply.ok, reply
    return reply.result


async def status_when(bus, account: str, **expected) -> dict:
    """The margin status once its figures are as ``expected`` (the events are asynchronous)."""
    async def check():
        view = await status(bus, account)
        return view if all(str(view[k]) == str(v) for k, v in expected.items()) else None

    return await eventually(check)


async def portfolio(bus, settings, kind: str = "individual", plan: str = "basic",
                    holdings: tuple[tuple[str, str], ...] = (("20", "100"), ("40", "50"))) -> tuple[str, list[str]]:
    """An account holding fresh symbols bought with a deposit (no cash left): by default
    $2,000 + $2,000 at prices 100 and 50."""
    account = f"acc-{uuid.uuid4().hex[:8]}"
    assert (await bus.request(OpenAccount(account_id=account, kind=kind, plan=plan))).ok
    symbols = [new_symbol() for _ in holdings]
    await set_prices(bus, settings, {s: p for s, (_, p) in zip(symbols, holdings, strict=True)})
    total = sum(D(q) * D(p) for q, p in holdings)
    await deposit(bus, settings, account, f"{total:.2f}")
    await trade(bus, settings, *[(account, s, "buy", q, p) for s, (q, p) in zip(symbols, holdings, strict=True)])
    await status_when(bus, account, market_value=f"{total:.2f}", cash="0.00")
    return account, symbols


async def borrow(bus, account: str, amount: str) -> dict:
    reply = await bus.request(BorrowMargin(account_id=account, amount=D(amount)))
    assert reply.ok, reply
    return reply.result


async def ledger_books(settings, account: str) -> dict[str, D]:
    rows = await fetch(settings.database_url, "SELECT book, amount FROM ledger.balances WHERE book LIKE $1 "
                       "AND asset = 'USD'", f"customer:{account}:%")
    return {r["book"].rsplit(":", 1)[1]: r["amount"] for r in rows}


async def books_balance(settings) -> bool:
    return await fetchval(settings.database_url,
                          "SELECT count(*) = 0 FROM (SELECT asset FROM ledger.postings GROUP BY asset "
                          "HAVING sum(amount) <> 0) t")


async def feed_kinds(bus, account: str) -> list[str]:
    reply = await bus.request(GetFeed(account_id=account))
    assert reply.ok, reply
    return [e["kind"] for e in reversed(reply.result["entries"])]


async def feed_has(bus, account: str, *kinds: str) -> list[str]:
    async def check():
        have = await feed_kinds(bus, account)
        return have if all(k in have for k in kinds) else None

    return await eventually(check)


async def open_call(settings, account: str):
    rows = await fetch(settings.database_url, "SELECT * FROM margin.calls WHERE account_id = $1 "
                       "ORDER BY issued_at DESC LIMIT 1", account)
    return rows[0] if rows else None


async def call_when(settings, account: str, status: str):
    async def check():
        call = await open_call(settings, account)
        return call if call is not None and call["status"] == status else None

    return await eventually(check)


async def calls_of(settings, account: str) -> list:
    return await fetch(settings.database_url, "SELECT * FROM margin.calls WHERE account_id = $1 "
                       "ORDER BY issued_at, call_id", account)


async def call_status_when(settings, call_id, status: str):
    async def check():
        rows = await fetch(settings.database_url, "SELECT * FROM margin.calls WHERE call_id = $1", call_id)
        return rows[0] if rows[0]["status"] == status else None

    return await eventually(check)


def pie_answer(call, account: str, *sells: tuple[str, str]) -> tuple[list[uuid.UUID], CashRaising]:
    """What the pie answers a liquidation's ``pie.cash.raise`` (request id = the call's id):
    sells of (symbol, dollars) in one batch, named by their intents' ids (none: nothing to
    sell); those ids and the answer."""
    ids = [uuid.uuid4() for _ in sells]
    answer = CashRaising(account_id=account, request_id=call["call_id"], amount=call["liquidation_amount"],
                         planned=sum((D(amount) for _, amount in sells), D("0.00")),
                         batch_id=uuid.uuid4() if sells else None, reason="margin call liquidation (deadline)",
                         intent_ids=ids)
    return ids, answer


async def pie_answers(bus, settings, *events) -> None:
    """Publish the pie's (or the window's) events; waits for the margin service to take them."""
    await handled(settings, "margin", *[await publish(bus, e) for e in events])


async def window(bus, settings, *fills: tuple[uuid.UUID, str, str, str, str, str]) -> None:
    """Book one window's fills of (intent id, account, symbol, side, quantity, price) in the
    ledger, as ``trade`` does, under the intents' own ids."""
    allocated = [Fill(intent_id=i, account_id=a, symbol=s, side=side, quantity=D(q), price=D(p),
                      amount=(D(q) * D(p)).quantize(D("0.01"))) for i, a, s, side, q, p in fills]
    executions = [Execution(symbol=f.symbol, side=f.side, quantity=f.quantity, price=f.price, amount=f.amount)
                  for f in allocated]
    event = FillsAllocated(window_id=uuid.uuid4(), executions=executions, fills=allocated, residues=[])
    await handled(settings, "ledger", await publish(bus, event))


async def liquidating_at_the_deadline(bus, settings) -> tuple[str, list[str], object]:
    """The call of the example in docs/services/margin.md: loan 1,600; prices halved; a call
    of 32.00, not liquidated before its deadline, unmet at it; 112.00 to sell."""
    account, (a, b) = await portfolio(bus, settings)
    await borrow(bus, account, "1600.00")
    await trade(bus, settings, (account, a, "buy", "8", "100"), (account, b, "buy", "16", "50"))
    await status_when(bus, account, cash="0.00", loan="1600.00")
    await set_prices(bus, settings, {a: "40", b: "20"})  # mv 2240, equity 640, req 672: a call of 32.00
    call = await call_when(settings, account, "open")
    assert call["amount_due"] == D("32.00")
    reply = await bus.request(CheckCalls(at=call["deadline"] - timedelta(seconds=1)))
    assert reply.ok and account not in reply.result["liquidated"]
    reply = await bus.request(CheckCalls(at=call["deadline"] + timedelta(seconds=1)))
    assert reply.ok and account in reply.result["liquidated"]
    call = await call_when(settings, account, "liquidating")
    figures = domain.figures([domain.Holding(a, D("28"), D("40")), domain.Holding(b, D("56"), D("20"))], D("0"),
                             D("1600"), RULES)
    assert call["liquidation_amount"] == domain.liquidation_amount(figures, RULES) == D("112.00")  # 32/0.3 x 1.05
    assert call["liquidation_reason"] == "deadline"
    return account, [a, b], call


# ---------------------------------------------------------------- borrowing


async def test_borrow_books_a_balanced_loan_into_cash(services, bus, settings):
    account, _ = await portfolio(bus, settings)
    result = await borrow(bus, account, "1000.00")
    assert D(result["borrowing_power"]) == D("600.00")  # 40% of 4,000 less 1,000
    view = await status_when(bus, account, loan="1000.00", cash="1000.00")
    assert (view["equity"], view["requirement"], view["borrowing_power"]) == ("4000.00", "1200.00", "600.00")
    assert view["call"] is None and view["eligible"]
    assert await ledger_books(settings, account) == {"cash": D("1000.00"), "loan": D("-1000.00")}
    assert await books_balance(settings)
    assert "margin_loan_drawn" in await feed_has(bus, account, "margin_loan_drawn")


@pytest.mark.parametrize("kind", ["traditional_ira", "roth_ira", "custodial"])
async def test_ira_and_custodial_accounts_can_never_borrow(services, bus, settings, kind):
    account, _ = await portfolio(bus, settings, kind=kind)
    reply = await bus.request(BorrowMargin(account_id=account, amount=D("1.00")))
    assert not reply.ok and "individual, joint, trust accounts only" in reply.reason
    view = await status(bus, account)
    assert not view["eligible"] and view["borrowing_power"] == "0.00"
    assert await ledger_books(settings, account) == {"cash": D("0.00")}


async def test_borrow_refused_when_too_large_too_small_or_not_diversified(services, bus, settings):
    account, symbols = await portfolio(bus, settings)
    reply = await bus.request(BorrowMargin(account_id=account, amount=D("1600.01")))
    assert not reply.ok and "exceeds the borrowing power of $1600.00" in reply.reason
    # two borrows together may not exceed the power either (the first is counted at once)
    await borrow(bus, account, "1000.00")
    reply = await bus.request(BorrowMargin(account_id=account, amount=D("600.01")))
    assert not reply.ok and "exceeds the borrowing power of $600.00" in reply.reason

    small, _ = await portfolio(bus, settings, holdings=(("10", "100"), ("10", "99.99")))
    reply = await bus.request(BorrowMargin(account_id=small, amount=D("1.00")))
    assert not reply.ok and "at least $2000.00 invested" in reply.reason

    lopsided, _ = await portfolio(bus, settings, holdings=(("30", "100"), ("10", "100")))
    reply = await bus.request(BorrowMargin(account_id=lopsided, amount=D("1.00")))
    assert not reply.ok and "not diversified" in reply.reason and "75.0%" in reply.reason


async def test_a_leveraged_security_lends_less(services, bus, settings):
    account, symbols = await portfolio(bus, settings)
    reply = await bus.request(SetSecurityRequirement(symbol=symbols[0], initial=D("0.75"), maintenance=D("0.75")))
    assert reply.ok, reply
    # 2,000 x 25% + 2,000 x 40%; requirement 2,000 x 75% + 2,000 x 30%
    await status_when(bus, account, borrowing_power="1300.00", requirement="2100.00")
    assert (await bus.request(SetSecurityRequirement(symbol=symbols[0], initial=D("1")))).ok
    await status_when(bus, account, borrowing_power="800.00")


# ---------------------------------------------------------------- calls


async def test_price_drop_issues_a_call_and_a_deposit_meets_it(services, bus, settings):
    account, (a, b) = await portfolio(bus, settings)
    await borrow(bus, account, "1600.00")
    await trade(bus, settings, (account, a, "buy", "8", "100"), (account, b, "buy", "16", "50"))
    await status_when(bus, account, market_value="5600.00", cash="0.00", loan="1600.00")
    # equity = mv - 1600 and requirement = 0.3 mv: a call below mv = 2285.71
    await set_prices(bus, settings, {a: "41", b: "20.5"})  # mv 2296: no call
    assert (await status(bus, account))["call"] is None
    await set_prices(bus, settings, {a: "40.80", b: "20.40"})  # mv 2284.80: equity 684.80 < 685.44
    call = await call_when(settings, account, "open")
    assert call["amount_due"] == D("0.64")
    assert call["deadline"] == domain.call_deadline(call["issued_at"], 3)
    await feed_has(bus, account, "margin_call_issued")

    await deposit(bus, settings, account, "0.64")
    await call_when(settings, account, "met")
    assert "margin_call_met" in await feed_has(bus, account, "margin_call_met")
    assert await books_balance(settings)


async def test_a_market_recovery_meets_the_call(services, bus, settings):
    account, (a, b) = await portfolio(bus, settings)
    await borrow(bus, account, "1600.00")
    await trade(bus, settings, (account, a, "buy", "8", "100"), (account, b, "buy", "16", "50"))
    await status_when(bus, account, cash="0.00", loan="1600.00")
    await set_prices(bus, settings, {a: "40", b: "20"})  # mv 2240, equity 640, req 672
    await call_when(settings, account, "open")
    await set_prices(bus, settings, {a: "41", b: "20.5"})  # mv 2296, equity 696, req 688.80
    await call_when(settings, account, "met")
    assert (await status(bus, account))["call"]["status"] == "met"


async def test_equity_under_the_hard_floor_liquidates_at_once(services, bus, settings):
    account, (a, b) = await portfolio(bus, settings)
    await borrow(bus, account, "1600.00")
    await trade(bus, settings, (account, a, "buy", "16", "100"))
    await status_when(bus, account, cash="0.00", loan="1600.00")
    await set_prices(bus, settings, {a: "40"})  # mv 36 x 40 + 2000 = 3440; equity 1840; req 1032
    assert (await status(bus, account))["call"] is None
    await set_prices(bus, settings, {a: "20", b: "30"})  # mv 720 + 1200 = 1920; equity 320 < 25% = 480
    call = await call_when(settings, account, "liquidating")  # no waiting for the deadline
    assert call["liquidation_reason"] == "floor"
    figures = domain.figures([domain.Holding(a, D("36"), D("20")), domain.Holding(b, D("40"), D("30"))], D("0"),
                             D("1600"), RULES)
    assert call["amount_due"] == domain.amount_due(figures) == D("256.00")
    assert call["liquidation_amount"] == domain.liquidation_amount(figures, RULES) == D("896.00")
    await feed_has(bus, account, "margin_call_issued", "margin_call_liquidated")


async def test_unmet_call_liquidates_at_the_deadline_and_the_proceeds_repay_the_loan(services, bus, settings):
    account, (a, _), call = await liquidating_at_the_deadline(bus, settings)
    await feed_has(bus, account, "margin_call_liquidated")

    # the pie plans the sell; the window sells it; the ledger books the fills; the loan is repaid
    (sell,), answer = pie_answer(call, account, (a, "112.00"))
    await pie_answers(bus, settings, answer)
    await window(bus, settings, (sell, account, a, "sell", "2.8", "40"))  # 112.00
    call = await call_when(settings, account, "liquidated")
    assert call["raised"] == D("112.00")
    await status_when(bus, account, loan="1488.00", cash="0.00")
    assert await ledger_books(settings, account) == {"cash": D("0.00"), "loan": D("-1488.00")}
    await feed_has(bus, account, "margin_loan_repaid")
    assert await books_balance(settings)


async def test_an_unrelated_sell_booked_first_neither_closes_the_liquidation_nor_issues_a_new_call(
        services, bus, settings):
    account, (a, b), call = await liquidating_at_the_deadline(bus, settings)
    (sell,), answer = pie_answer(call, account, (a, "112.00"))
    await publish(bus, answer)  # whenever the margin service takes it
    # a customer's sell of 2.00 from an earlier window is booked first: still short, still liquidating
    await trade(bus, settings, (account, b, "sell", "0.1", "20"))
    await status_when(bus, account, cash="2.00", loan="1600.00")
    assert [(c["call_id"], c["status"]) for c in await calls_of(settings, account)] == [
        (call["call_id"], "liquidating")]
    # then the liquidation's own sell: its 112.00 repay the loan and the call is liquidated
    await window(bus, settings, (sell, account, a, "sell", "2.8", "40"))
    await status_when(bus, account, loan="1488.00", cash="2.00")
    (closed,) = await calls_of(settings, account)
    assert (closed["status"], closed["raised"]) == ("liquidated", D("112.00"))
    assert await ledger_books(settings, account) == {"cash": D("2.00"), "loan": D("-1488.00")}
    await feed_has(bus, account, "margin_loan_repaid")
    assert (await feed_kinds(bus, account)).count("margin_call_issued") == 1
    assert await books_balance(settings)


async def test_the_liquidations_fills_booked_before_the_pies_answer_repay_the_loan_once_it_arrives(
        services, bus, settings):
    account, (a, b), call = await liquidating_at_the_deadline(bus, settings)
    ours, answer = pie_answer(call, account, (a, "56.00"), (b, "56.00"))
    # the margin service hears of the window's fills (and of an unrelated sell) before the pie's answer
    await trade(bus, settings, (account, b, "sell", "0.1", "20"))
    await window(bus, settings, (ours[0], account, a, "sell", "1.4", "40"), (ours[1], account, b, "sell", "2.8", "20"))
    await status_when(bus, account, cash="114.00", loan="1600.00")
    assert [c["status"] for c in await calls_of(settings, account)] == ["liquidating"]
    await pie_answers(bus, settings, answer)
    await status_when(bus, account, loan="1488.00", cash="2.00")
    (closed,) = await calls_of(settings, account)
    assert (closed["status"], closed["raised"]) == ("liquidated", D("112.00"))
    assert await fetchval(settings.database_url, "SELECT count(*) FROM margin.liquidation_sells "
                                                 "WHERE account_id = $1", account) == 0
    assert await books_balance(settings)


async def test_a_liquidation_halted_in_part_closes_on_its_first_sells_and_the_carried_over_sell_repays_later(
        services, bus, settings):
    account, (a, b), call = await liquidating_at_the_deadline(bus, settings)
    (first, halted), answer = pie_answer(call, account, (a, "56.00"), (b, "56.00"))
    await pie_answers(bus, settings, answer)
    await window(bus, settings, (first, account, a, "sell", "1.4", "40"))  # b halted: its sell carries over
    await status_when(bus, account, loan="1544.00", cash="0.00")
    assert (await call_status_when(settings, call["call_id"], "liquidated"))["raised"] == D("56.00")
    # still short (equity 640.00, requirement 655.20): a new call, with its own deadline
    again = await call_when(settings, account, "open")
    assert again["amount_due"] == D("15.20")
    await window(bus, settings, (halted, account, b, "sell", "2.8", "20"))  # the next window
    await status_when(bus, account, loan="1488.00", cash="0.00")
    await call_status_when(settings, again["call_id"], "met")
    assert (await call_status_when(settings, call["call_id"], "liquidated"))["raised"] == D("112.00")
    assert await books_balance(settings)


async def test_an_answer_that_names_no_sells_lets_the_accounts_next_sells_close_the_liquidation(
        services, bus, settings):
    """A pie from before its answer named the sells: the call is kept as before (legacy),
    closed by the account's next sells."""
    account, (a, _), call = await liquidating_at_the_deadline(bus, settings)
    _, answer = pie_answer(call, account, (a, "112.00"))
    await pie_answers(bus, settings, answer.model_copy(update={"intent_ids": []}))
    assert [(c["status"], c["legacy"]) for c in await calls_of(settings, account)] == [("liquidating", True)]
    await window(bus, settings, (uuid.uuid4(), account, a, "sell", "2.8", "40"))
    await status_when(bus, account, loan="1488.00", cash="0.00")
    assert (await call_status_when(settings, call["call_id"], "liquidated"))["raised"] == D("112.00")


async def test_a_liquidation_the_pie_has_nothing_to_sell_for_closes_and_the_account_is_called_again(
        services, bus, settings):
    account, _, call = await liquidating_at_the_deadline(bus, settings)
    _, answer = pie_answer(call, account)
    await pie_answers(bus, settings, answer)
    assert (await call_status_when(settings, call["call_id"], "liquidated"))["raised"] == D("0.00")
    again = await call_when(settings, account, "open")
    assert (again["amount_due"], again["issued_at"] > call["issued_at"]) == (D("32.00"), True)
    assert (await status(bus, account))["loan"] == "1600.00"


async def test_a_liquidation_whose_every_sell_the_window_rejects_closes_and_the_account_is_called_again(
        services, bus, settings):
    account, (a, b), call = await liquidating_at_the_deadline(bus, settings)
    (first, second), answer = pie_answer(call, account, (a, "56.00"), (b, "56.00"))
    # the window's rejection of the first sell (and of a buy of the account) reaches the
    # margin service before the pie's answer does
    await pie_answers(bus, settings, IntentsRejected(account_id=account, window_id=uuid.uuid4(), reasons={
        str(first): f"the venue refused {a}: {a} is inactive and cannot be traded",
        str(uuid.uuid4()): "under_minimum"}))
    await pie_answers(bus, settings, answer)
    # the second sell may still fill (carried over): the call waits for it
    assert [c["status"] for c in await calls_of(settings, account)] == ["liquidating"]
    await pie_answers(bus, settings, IntentsRejected(account_id=account, window_id=uuid.uuid4(), reasons={
        str(second): f"the venue refused {b}: unknown symbol {b}"}))
    closed = await call_status_when(settings, call["call_id"], "liquidated")
    assert closed["raised"] == D("0.00")
    # nothing was sold: still short by the same 32.00, so a new call with its own deadline
    again = await call_when(settings, account, "open")
    assert (again["amount_due"], again["issued_at"] > call["issued_at"]) == (D("32.00"), True)
    assert (await status(bus, account))["loan"] == "1600.00"
    assert await ledger_books(settings, account) == {"cash": D("0.00"), "loan": D("-1600.00")}


async def test_a_rejection_while_no_call_is_liquidating_is_not_kept(services, bus, settings):
    account, _ = await portfolio(bus, settings)
    await pie_answers(bus, settings, IntentsRejected(account_id=account, window_id=uuid.uuid4(),
                                                     reasons={str(uuid.uuid4()): "under_minimum"}))
    assert await fetchval(settings.database_url, "SELECT count(*) FROM margin.liquidation_rejections "
                                                 "WHERE account_id = $1", account) == 0


# ---------------------------------------------------------------- repayments, withdrawals, interest


async def test_repay_from_cash_and_withdrawals_keep_the_loan_under_forty_percent(services, bus, settings):
    account, _ = await portfolio(bus, settings)
    await borrow(bus, account, "1500.00")
    await status_when(bus, account, loan="1500.00", cash="1500.00")
    # value 5,500: the loan may be at most 40% of what is left: 3,750; so 1,750 may leave
    reply = await bus.request(RepayLoan(account_id=account, repayment_id=uuid.uuid4(), amount=D("1500.01")))
    assert not reply.ok and "exceeds the loan" in reply.reason
    withdrawal = WithdrawalRequested(withdrawal_id=uuid.uuid4(), account_id=account, amount=D("1750.01"),
                                     currency="USD", requested_at=datetime.now(UTC))
    await handled(settings, "ledger", await publish(bus, withdrawal, str(withdrawal.withdrawal_id)))
    assert await ledger_books(settings, account) == {"cash": D("1500.00"), "loan": D("-1500.00")}
    await feed_has(bus, account, "funding_rejected")
    reply = await bus.request(GetFeed(account_id=account))
    refused = next(e for e in reply.result["entries"] if e["kind"] == "funding_rejected")
    assert "above 40% of the account's value; at most 1750.00 can be withdrawn" in refused["message"]

    reply = await bus.request(RepayLoan(account_id=account, repayment_id=uuid.uuid4(), amount=D("1000.00")))
    assert reply.ok and reply.result["loan"] == "500.00" and reply.result["cash"] == "500.00"
    await status_when(bus, account, loan="500.00", cash="500.00", borrowing_power="1100.00")
    withdrawal = WithdrawalRequested(withdrawal_id=uuid.uuid4(), account_id=account, amount=D("500.00"),
                                     currency="USD", requested_at=datetime.now(UTC))
    await handled(settings, "ledger", await publish(bus, withdrawal, str(withdrawal.withdrawal_id)))
    await eventually(lambda: ledger_books(settings, account))
    assert (await ledger_books(settings, account))["cash"] == D("0.00")
    assert await books_balance(settings)


async def test_interest_accrues_daily_and_is_charged_monthly(services, bus, settings):
    account, _ = await portfolio(bus, settings, plan="plus")
    await borrow(bus, account, "1000.00")
    await status_when(bus, account, loan="1000.00")
    year = 2030 + random.randrange(1, 60)  # a month no other run of this suite accrued
    days = [date(year, 1, d) for d in range(1, 32)]
    for day in days:
        reply = await bus.request(AccrueInterest(day=day))
        assert reply.ok, reply
    charged = reply.result
    expected = domain.charge_of(domain.daily_interest(D("1000"), D("0.0725")) * 31)
    assert expected == D("6.15")
    assert charged["charged_accounts"] >= 1
    again = await bus.request(AccrueInterest(day=days[-1]))  # once per day
    assert again.result == charged

    async def charged_cash():
        books = await ledger_books(settings, account)
        return books if books["cash"] == D("1000.00") - expected else None

    await eventually(charged_cash)
    await status_when(bus, account, cash=f"{D('1000.00') - expected}")
    remainder = await fetchval(settings.database_url, "SELECT interest_accrued FROM margin.accounts "
                               "WHERE account_id = $1", account)
    assert D("0") <= remainder < D("0.01")  # what was not charged carries into the next month
    assert await fetchval(settings.database_url, "SELECT sum(amount) FROM ledger.postings WHERE book = "
                          "'firm:margin-interest'") >= expected
    assert await books_balance(settings)


async def test_a_days_interest_is_on_the_loan_at_the_days_end_not_when_it_is_accrued(services, bus, settings):
    ledger = services[0]
    account, _ = await portfolio(bus, settings, plan="plus")
    year = 2090 + random.randrange(0, 50)  # days no other run of this suite accrued
    # February: New York is at UTC-5, its midnight is 05:00 UTC
    ledger.clock.set(datetime(year, 2, 10, 15, tzinfo=UTC))
    await borrow(bus, account, "1000.00")
    await status_when(bus, account, loan="1000.00")
    ledger.clock.set(datetime(year, 2, 11, 6, tzinfo=UTC))  # after the 10th's end, before it is accrued
    reply = await bus.request(RepayLoan(account_id=account, repayment_id=uuid.uuid4(), amount=D("400.00")))
    assert reply.ok, reply
    await status_when(bus, account, loan="600.00")

    async def accrued() -> D:
        return await fetchval(settings.database_url, "SELECT interest_accrued FROM margin.accounts "
                              "WHERE account_id = $1", account)

    expected = D("0")  # kept to 1e-10 of a dollar
    for day, loan in ((9, "0"), (10, "1000"), (11, "600")):  # no loan at the 9th's end; 1,000 at the 10th's
        assert (await bus.request(AccrueInterest(day=date(year, 2, day)))).ok
        expected = (expected + domain.daily_interest(D(loan), D("0.0725"))).quantize(D("1e-10"))
        assert await accrued() == expected, day


# ---------------------------------------------------------------- the set-based watch


async def test_one_tick_reevaluates_every_holder_like_the_formulas(services, bus, settings):
    """Margin accounts with random portfolios around one shared security: after one tick the
    accounts with a call are exactly those the formulas say, with the amounts due."""
    rng = random.Random(7)
    shared, other = new_symbol(), new_symbol()
    await set_prices(bus, settings, {shared: "100", other: "50"})
    accounts = {}
    rows_accounts, rows_positions = [], []
    for i in range(60):
        account = f"set-{uuid.uuid4().hex[:8]}"
        q1, q2 = D(rng.randrange(1, 4000)) / 100, D(rng.randrange(1, 4000)) / 100
        loan = (D(rng.randrange(1, 100)) / 100 * (q1 * 100 + q2 * 50) * D("0.8")).quantize(D("0.01"))
        cash = D(rng.randrange(-5000, 5000)) / 100
        accounts[account] = (q1, q2, loan, cash)
        rows_accounts.append((account, "individual", "basic", cash, 1, loan))
        rows_positions += [(account, shared, q1, 1), (account, other, q2, 1)]
    import asyncpg

    conn = await asyncpg.connect(settings.database_url)
    try:
        await conn.executemany("INSERT INTO margin.accounts (account_id, kind, plan, cash, version, loan) "
                               "VALUES ($1, $2, $3, $4, $5, $6)", rows_accounts)
        await conn.executemany("INSERT INTO margin.positions (account_id, symbol, quantity, version) "
                               "VALUES ($1, $2, $3, $4)", rows_positions)
        await conn.execute("SET search_path TO margin")  # as the service does at start:
        await store.recompute(conn, RULES.maintenance_rate, RULES.regulatory_minimum)
    finally:
        await conn.close()
    await set_prices(bus, settings, {shared: "61.5"})
    expected = {}
    for account, (q1, q2, loan, cash) in accounts.items():
        f = domain.figures([domain.Holding(shared, q1, D("61.5")), domain.Holding(other, q2, D("50"))], cash, loan,
                           RULES)
        if (due := domain.amount_due(f)) is not None:
            expected[account] = (due, domain.under_hard_floor(f, RULES))
    rows = await fetch(settings.database_url, "SELECT account_id, amount_due, status, liquidation_amount "
                       "FROM margin.calls WHERE account_id = ANY($1::text[])", list(accounts))
    assert {r["account_id"]: (r["amount_due"], r["status"] == "liquidating") for r in rows} == expected
    assert 0 < len(expected) < len(accounts)
