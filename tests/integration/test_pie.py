"""The pie service against the real RabbitMQ and PostgreSQL; ledger and market events are
published by the test itself."""

from __future__ import annotations

import asyncio
import itertools
import json
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from shared.contracts import (
    AccountFills,
    AccountOpened,
    ApplyModel,
    CancelRebalance,
    CashChanged,
    Fill,
    GetPortfolio,
    IntentsSubmitted,
    IntentSource,
    ListModels,
    Message,
    PieSpec,
    PricesChanged,
    RaiseCash,
    Rebalance,
    SecurityStatusChanged,
    SetPie,
    SetSettings,
    Side,
    WithdrawalPending,
)
from shared.topology import EVENTS_EXCHANGE
from tests.integration.test_order_margin import new_symbol
from tests.support import eventually, fetch, fetchval, fills_batch

pytestmark = pytest.mark.integration

D = Decimal
NOW = datetime(2026, 11, 25, 14, 0, tzinfo=UTC)
# The time of these tests' prices: after any price another module's services published (the
# market publishes its list at start, at the time it starts), which the pie would otherwise
# keep over these (it takes a price only when it is newer).
PRICED_AT = max(NOW, datetime.now(UTC)) + timedelta(days=1)
PRICES = {"VTI": D("250.00"), "BND": D("72.50"), "VXUS": D("60.00")}
SIXTY_FORTY = PieSpec.model_validate({"name": "Balanced", "slices": [{"symbol": "VTI", "target": 60},
                                                                     {"symbol": "BND", "target": 40}]})
TWO_CORES = PieSpec.model_validate({"name": "Two cores", "slices": [
    {"target": 60, "pie": {"name": "Core", "slices": [{"symbol": "VTI", "target": 50},
                                                      {"symbol": "VXUS", "target": 50}]}},
    {"target": 40, "pie": {"name": "Growth", "slices": [{"symbol": "VTI", "target": 100}]}},
]})


@pytest.fixture
async def pie(service_factory):
    async with service_factory("pie").running() as svc:
        yield svc


@pytest.fixture
async def intents_queue(bus):
    """A private queue that sees every IntentsSubmitted the pie service publishes."""
    channel = await bus.connection.channel()
    queue = await channel.declare_queue(exclusive=True, auto_delete=True)
    await queue.bind(EVENTS_EXCHANGE, routing_key="pie.intents.#")
    yield queue
    await channel.close()


async def publish(bus, event: Message, message_id: str | None = None) -> str:
    message_id = message_id or str(uuid.uuid4())
    await bus.publish_json(event.TYPE, event.model_dump(mode="json"), message_id=message_id)
    return message_id


async def submitted(queue, account: str) -> list[IntentsSubmitted]:
    """Every batch for ``account`` waiting in ``queue`` (read and acked)."""
    out = []
    while (msg := await queue.get(fail=False, no_ack=True)) is not None:
        batch = IntentsSubmitted.model_validate_json(msg.body)
        if batch.account_id == account:
            out.append(batch)
    return out


async def handled(settings, message_id: str) -> bool:
    return bool(await fetchval(settings.database_url, "SELECT count(*) FROM pie.inbox WHERE message_id = $1",
                               message_id))


async def open_account_with_pie(bus, settings, pie_spec: PieSpec) -> str:
    account = f"pie-{uuid.uuid4().hex[:8]}"
    await publish(bus, AccountOpened(account_id=account, kind="individual", plan="basic", opened_at=NOW))
    await publish(bus, PricesChanged(prices=PRICES, as_of=PRICED_AT))
    await eventually(lambda: fetchval(settings.database_url,
                                      "SELECT count(*) FROM pie.accounts WHERE account_id = $1", account))
    await eventually(lambda: prices_known(settings))
    reply = await bus.request(SetPie(account_id=account, pie=pie_spec))
    assert reply.ok and reply.result["pie"]["name"] == pie_spec.name
    return account


async def prices_known(settings) -> bool:
    return await fetchval(settings.database_url, "SELECT count(*) = $1 FROM pie.prices WHERE symbol = ANY($2::text[])",
                          len(PRICES), list(PRICES))


def cash_changed(account: str, cash: str, delta: str, version: int) -> CashChanged:
    return CashChanged(account_id=account, cash=D(cash), delta=D(delta), cause="deposit",
                       cause_id=str(uuid.uuid4()), version=version)


async def test_a_deposit_into_a_60_40_pie_submits_60_and_40_of_buys_once(pie, bus, settings, intents_queue):
    account = await open_account_with_pie(bus, settings, SIXTY_FORTY)
    deposit = cash_changed(account, "100.00", "100.00", version=1)
    first = await publish(bus, deposit)

    batches = await eventually(lambda: submitted(intents_queue, account))
    assert len(batches) == 1
    buys = {i.symbol: (i.side, i.amount, i.source) for i in batches[0].intents}
    assert buys == {"VTI": ("buy", D("60.00"), "auto_invest"), "BND": ("buy", D("40.00"), "auto_invest")}
    rows = await fetch(settings.database_url,
                       "SELECT path, amount, status FROM pie.intents WHERE account_id = $1 ORDER BY path", account)
    assert [tuple(r) for r in rows] == [("BND", D("40.00"), "pending"), ("VTI", D("60.00"), "pending")]

    # The same event again, under its own id and under a new one: nothing more is bought.
    await publish(bus, deposit, message_id=first)
    again = await publish(bus, deposit)
    await eventually(lambda: handled(settings, again))
    assert await fetchval(settings.database_url, "SELECT count(*) FROM pie.intents WHERE account_id = $1",
                          account) == 2
    assert await submitted(intents_queue, account) == []

    view = (await bus.request(GetPortfolio(account_id=account))).result
    assert (view["cash"], view["pending_buys"], view["invested"], view["total"]) == ("100.00", "100.00", "0.00",
                                                                                      "100.00")
    assert await fetchval(settings.database_url, "SELECT count(*) FROM pie.dead_letters WHERE account_id = $1",
                          account) == 0


async def test_booked_fills_move_into_their_slices_and_clear_pending_buys(pie, bus, settings, intents_queue):
    account = await open_account_with_pie(bus, settings, TWO_CORES)
    await publish(bus, cash_changed(account, "100.00", "100.00", version=1))
    (batch,) = await eventually(lambda: submitted(intents_queue, account))
    by_path = {r["path"]: r["intent_id"] for r in await fetch(
        settings.database_url, "SELECT path, intent_id FROM pie.intents WHERE account_id = $1", account)}
    assert {i.intent_id for i in batch.intents} == set(by_path.values())
    amounts = {r["path"]: r["amount"] for r in await fetch(
        settings.database_url, "SELECT path, amount FROM pie.intents WHERE account_id = $1", account)}
    assert amounts == {"Core/VTI": D("30.00"), "Core/VXUS": D("30.00"), "Growth/VTI": D("40.00")}

    fills = [Fill(intent_id=by_path["Core/VTI"], account_id=account, symbol="VTI", side=Side.BUY,
                  quantity=D("0.12000"), amount=D("30.00"), price=D("250.00")),
             Fill(intent_id=by_path["Core/VXUS"], account_id=account, symbol="VXUS", side=Side.BUY,
                  quantity=D("0.50000"), amount=D("30.00"), price=D("60.00")),
             Fill(intent_id=by_path["Growth/VTI"], account_id=account, symbol="VTI", side=Side.BUY,
                  quantity=D("0.16000"), amount=D("40.00"), price=D("250.00"))]
    booked = fills_batch(AccountFills(account_id=account, window_id=uuid.uuid4(), fills=fills, cash=D("0.00"),
                                      positions={"VTI": D("0.28000"), "VXUS": D("0.50000")}, version=2,
                                      booked_at=NOW))
    message_id = await publish(bus, booked)
    await eventually(lambda: handled(settings, message_id))
    replayed = await publish(bus, booked)  # the same fills under another id change nothing
    cash_after_fill = await publish(bus, CashChanged(account_id=account, cash=D("0.00"), delta=D("-100.00"),
                                                     cause="fill", cause_id=str(booked.window_id), version=2))
    for mid in (replayed, cash_after_fill):
        await eventually(lambda mid=mid: handled(settings, mid))

    holdings = await fetch(settings.database_url, "SELECT path, quantity, cost FROM pie.slice_holdings "
                                                  "WHERE account_id = $1 ORDER BY path", account)
    assert [tuple(r) for r in holdings] == [("Core/VTI", D("0.12000"), D("30.00")),
                                            ("Core/VXUS", D("0.50000"), D("30.00")),
                                            ("Growth/VTI", D("0.16000"), D("40.00"))]
    view = await eventually(lambda: _view_if(bus, account, lambda v: v["pending_buys"] == "0.00"))
    assert (view["cash"], view["invested"], view["total"]) == ("0.00", "100.00", "100.00")
    assert [(s["path"], s["depth"], s["value"], s["actual_pct"], s["quantity"]) for s in view["slices"]] == [
        ("Core", 0, "60.00", "60.00", None),
        ("Core/VTI", 1, "30.00", "50.00", "0.12000"),
        ("Core/VXUS", 1, "30.00", "50.00", "0.50000"),
        ("Growth", 0, "40.00", "40.00", None),
        ("Growth/VTI", 1, "40.00", "100.00", "0.16000"),
    ]
    assert await fetchval(settings.database_url, "SELECT quantity FROM pie.positions "
                                                 "WHERE account_id = $1 AND symbol = 'VTI'", account) == D("0.28000")

    # A later deposit is invested on top; the fills left nothing pending.
    await publish(bus, cash_changed(account, "50.00", "50.00", version=3))
    batches = await eventually(lambda: submitted(intents_queue, account))
    assert sum(i.amount for b in batches for i in b.intents) == D("50.00")


async def submitted_by_account(queue, accounts: list[str]) -> dict[str, list[IntentsSubmitted]]:
    """Every batch waiting in ``queue`` for each of ``accounts`` (read and acked)."""
    out: dict[str, list[IntentsSubmitted]] = {a: [] for a in accounts}
    while (msg := await queue.get(fail=False, no_ack=True)) is not None:
        batch = IntentsSubmitted.model_validate_json(msg.body)
        if batch.account_id in out:
            out[batch.account_id].append(batch)
    return out


async def collect(queue, accounts: list[str], n: int = 1) -> dict[str, list[IntentsSubmitted]]:
    """The batches submitted for ``accounts`` once each has at least ``n``."""
    found: dict[str, list[IntentsSubmitted]] = {a: [] for a in accounts}

    async def check():
        for account, batches in (await submitted_by_account(queue, accounts)).items():
            found[account] += batches
        return found if all(len(b) >= n for b in found.values()) else None

    return await eventually(check)


async def test_one_fills_batch_books_every_account_in_it_and_invests_each_ones_cash(pie, bus, settings,
                                                                                     intents_queue):
    """A ``ledger.fills.booked`` batch of two accounts: each account's fills move into its
    slices and its cash after them is invested, each with its own intent ids."""
    accounts = sorted([await open_account_with_pie(bus, settings, SIXTY_FORTY) for _ in range(2)])
    for account in accounts:
        await publish(bus, cash_changed(account, "100.00", "100.00", version=1))
    first = await collect(intents_queue, accounts)
    window_id = uuid.uuid4()
    # Each account's fills, with $50.00 of cash after them (a deposit booked meanwhile).
    parts = [await account_fills(settings, a, first[a][0], PRICES, cash="50.00", version=3, window_id=window_id)
             for a in accounts]
    message_id = await publish(bus, fills_batch(*reversed(parts)))
    await eventually(lambda: handled(settings, message_id))

    for account in accounts:
        holdings = await fetch(settings.database_url, "SELECT path, quantity, cost FROM pie.slice_holdings "
                                                      "WHERE account_id = $1 ORDER BY path", account)
        assert [tuple(r) for r in holdings] == [("BND", D("0.55172"), D("40.00")), ("VTI", D("0.24000"), D("60.00"))]
        view = (await bus.request(GetPortfolio(account_id=account))).result
        assert (view["cash"], view["pending_buys"]) == ("50.00", "50.00")
    second = await collect(intents_queue, accounts)
    assert {a: sum(i.amount for b in second[a] for i in b.intents) for a in accounts} == {
        a: D("50.00") for a in accounts}
    ids = [i.intent_id for a in accounts for b in second[a] for i in b.intents]
    assert len(set(ids)) == len(ids) and len({b.batch_id for a in accounts for b in second[a]}) == 2
    assert await fetchval(settings.database_url, "SELECT count(*) FROM pie.dead_letters WHERE account_id = ANY($1)",
                          accounts) == 0


async def _view_if(bus, account, predicate):
    reply = await bus.request(GetPortfolio(account_id=account))
    return reply.result if reply.ok and predicate(reply.result) else None


async def test_an_invalid_pie_is_refused_with_every_reason(pie, bus, settings):
    account = await open_account_with_pie(bus, settings, SIXTY_FORTY)
    bad = PieSpec.model_validate({"name": "Bad", "slices": [
        {"symbol": "VTI", "target": 50}, {"symbol": "VTI", "target": 30}, {"symbol": "NOPE", "target": 0},
        {"target": 10, "pie": {"name": "Inner", "slices": []}},
    ]})
    reply = await bus.request(SetPie(account_id=account, pie=bad))
    assert not reply.ok
    assert reply.errors == [
        "root pie 'Bad': targets sum to 90, not 100",
        "root pie 'Bad': duplicate symbol VTI",
        "slice NOPE: target 0% is below the minimum of 1%",
        "slice NOPE: unknown symbol NOPE (the market has no price for it)",
        "pie Inner: has no slices, at least 1 needed",
    ]
    assert all(error in reply.reason for error in reply.errors)
    stored = await fetchval(settings.database_url, "SELECT name FROM pie.pies WHERE account_id = $1", account)
    assert stored == "Balanced"  # the previous pie stays


async def test_a_pie_for_an_unknown_account_is_refused(pie, bus):
    reply = await bus.request(SetPie(account_id="nobody-" + uuid.uuid4().hex[:8], pie=SIXTY_FORTY))
    assert not reply.ok and any("unknown account" in e for e in reply.errors)


async def test_setting_a_pie_trades_nothing(pie, bus, settings, intents_queue):
    account = f"pie-{uuid.uuid4().hex[:8]}"
    await publish(bus, PricesChanged(prices=PRICES, as_of=PRICED_AT))
    await publish(bus, cash_changed(account, "500.00", "500.00", version=1))  # cash before any pie
    await eventually(lambda: fetchval(settings.database_url,
                                      "SELECT cash = 500 FROM pie.accounts WHERE account_id = $1", account))
    await eventually(lambda: prices_known(settings))
    assert (await bus.request(SetPie(account_id=account, pie=SIXTY_FORTY))).ok
    view = (await bus.request(GetPortfolio(account_id=account))).result
    assert view["pie_name"] == "Balanced" and view["pending_buys"] == "0.00"
    assert await submitted(intents_queue, account) == []


# ---------------------------------------------------------------- dynamic rebalancing

_ticks = itertools.count(1)


def later() -> datetime:
    """A price time after every one used so far (prices older than the stored one are ignored)."""
    return PRICED_AT + timedelta(minutes=next(_ticks))


async def move_prices(bus, settings, prices: dict[str, Decimal]) -> None:
    await publish(bus, PricesChanged(prices=prices, as_of=later()))
    symbols = sorted(prices)
    await eventually(lambda: fetchval(
        settings.database_url, "SELECT count(*) = $3 FROM pie.prices p JOIN unnest($1::text[], $2::numeric[]) "
                               "AS t(s, q) ON p.symbol = t.s AND p.price = t.q",
        symbols, [prices[k] for k in symbols], len(symbols)))


async def fill_batch(bus, settings, account: str, batch: IntentsSubmitted, prices: dict[str, Decimal], *,
                     cash: str, version: int) -> None:
    """Book every intent of ``batch`` as filled at ``prices`` (as the ledger would report it)."""
    part = await account_fills(settings, account, batch, prices, cash=cash, version=version)
    mid = await publish(bus, fills_batch(part))
    await eventually(lambda: handled(settings, mid))


async def account_fills(settings, account: str, batch: IntentsSubmitted, prices: dict[str, Decimal], *,
                        cash: str, version: int, window_id: uuid.UUID | None = None) -> AccountFills:
    """The account's part of a booked fills batch that fills every intent of ``batch`` at ``prices``."""
    fills = [Fill(intent_id=i.intent_id, account_id=account, symbol=i.symbol, side=i.side,
                  quantity=(i.amount / prices[i.symbol]).quantize(D("0.00001")) if i.quantity is None else i.quantity,
                  amount=i.amount if i.amount is not None else (i.quantity * prices[i.symbol]).quantize(D("0.01")),
                  price=prices[i.symbol]) for i in batch.intents]
    positions = {r["symbol"]: r["quantity"] for r in await fetch(
        settings.database_url, "SELECT symbol, sum(quantity) AS quantity FROM pie.slice_holdings "
                               "WHERE account_id = $1 GROUP BY symbol", account)}
    for f in fills:
        positions[f.symbol] = positions.get(f.symbol, D(0)) + (f.quantity if f.side is Side.BUY else -f.quantity)
    return AccountFills(account_id=account, window_id=window_id or uuid.uuid4(), fills=fills, cash=D(cash),
                        positions=positions, version=version, booked_at=NOW)


async def invested_account(bus, settings, intents_queue, pie_spec: PieSpec) -> str:
    """An account with ``pie_spec`` whose first $100.00 is invested and booked (version 2)."""
    account = await open_account_with_pie(bus, settings, pie_spec)
    await publish(bus, cash_changed(account, "100.00", "100.00", version=1))
    (first,) = await eventually(lambda: submitted(intents_queue, account))
    await fill_batch(bus, settings, account, first, PRICES, cash="0.00", version=2)
    return account


def trades(batch: IntentsSubmitted) -> dict[str, tuple[str, Decimal]]:
    """Per symbol: side and dollars, or for a share-quantity intent side and ``"N shares"``."""
    return {i.symbol: (i.side.value, i.amount if i.amount is not None else f"{i.quantity} shares")
            for i in batch.intents}


async def test_a_second_deposit_into_a_drifted_portfolio_buys_only_the_underweight_slice(
        pie, bus, settings, intents_queue):
    account = await invested_account(bus, settings, intents_queue, SIXTY_FORTY)
    # VTI doubles: 120 / 40 of 160, far above 60%. $40 more all goes to BND (bonds 80 of 200 = 40%).
    await move_prices(bus, settings, {"VTI": D("500.00")})
    await publish(bus, cash_changed(account, "40.00", "40.00", version=3))
    (second,) = await eventually(lambda: submitted(intents_queue, account))
    assert trades(second) == {"BND": ("buy", D("40.00"))}
    await move_prices(bus, settings, PRICES)


async def test_removing_a_slice_liquidates_it_and_reinvests_in_the_same_pie_even_with_auto_invest_off(
        pie, bus, settings, intents_queue):
    account = await invested_account(bus, settings, intents_queue, TWO_CORES)
    assert (await bus.request(SetSettings(account_id=account, auto_invest=False))).result["auto_invest"] is False

    # Core loses VXUS: all its shares are sold (by quantity, whatever the price does until the
    # window), and the proceeds go to what is left of Core (VTI).
    without = PieSpec.model_validate({"name": "Two cores", "slices": [
        {"target": 60, "pie": {"name": "Core", "slices": [{"symbol": "VTI", "target": 100}]}},
        {"target": 40, "pie": {"name": "Growth", "slices": [{"symbol": "VTI", "target": 100}]}},
    ]})
    assert (await bus.request(SetPie(account_id=account, pie=without))).ok
    (sale,) = await eventually(lambda: submitted(intents_queue, account))
    assert trades(sale) == {"VXUS": ("sell", "0.50000 shares")}
    assert await fetchval(settings.database_url, "SELECT reinvest_in FROM pie.intents WHERE intent_id = $1",
                          sale.intents[0].intent_id) == "Core"
    await fill_batch(bus, settings, account, sale, PRICES, cash="30.00", version=3)
    (buy,) = await eventually(lambda: submitted(intents_queue, account))
    assert {(i.side.value, i.amount) for i in buy.intents} == {("buy", D("30.00"))}
    path = await fetchval(settings.database_url, "SELECT path FROM pie.intents WHERE intent_id = $1",
                          buy.intents[0].intent_id)
    assert path == "Core/VTI"


async def slice_holdings(settings, account: str) -> list[tuple[str, Decimal, Decimal]]:
    """The account's slice holdings in the pie's books: (path, quantity, cost), by path."""
    return [tuple(r) for r in await fetch(settings.database_url, "SELECT path, quantity, cost FROM pie.slice_holdings "
                                                                 "WHERE account_id = $1 ORDER BY path", account)]


async def test_moving_a_slice_into_a_sub_pie_trades_nothing_and_its_shares_move_with_it(
        pie, bus, settings, intents_queue):
    account = await invested_account(bus, settings, intents_queue, SIXTY_FORTY)  # VTI $60, BND $40
    moved = PieSpec.model_validate({"name": "Balanced", "slices": [
        {"symbol": "VTI", "target": 60},
        {"target": 40, "pie": {"name": "Bonds", "slices": [{"symbol": "BND", "target": 100}]}}]})
    assert (await bus.request(SetPie(account_id=account, pie=moved))).ok
    assert await fetchval(settings.database_url, "SELECT count(*) FROM pie.intents "
                                                 "WHERE account_id = $1 AND status = 'pending'", account) == 0
    assert await slice_holdings(settings, account) == [("Bonds/BND", D("0.55172"), D("40.00")),
                                                       ("VTI", D("0.24000"), D("60.00"))]
    view = (await bus.request(GetPortfolio(account_id=account))).result
    assert [(s["path"], s["value"]) for s in view["slices"]] == [("VTI", "60.00"), ("Bonds", "40.00"),
                                                                 ("Bonds/BND", "40.00")]
    assert await submitted(intents_queue, account) == []


async def test_renaming_a_sub_pie_moves_its_holdings_and_pending_buys_to_the_new_name_and_trades_nothing(
        pie, bus, settings, intents_queue):
    account = await invested_account(bus, settings, intents_queue, TWO_CORES)
    await publish(bus, cash_changed(account, "50.00", "50.00", version=3))
    (buys,) = await eventually(lambda: submitted(intents_queue, account))
    # Growth renamed Satellite: its VTI goes to Satellite/VTI, not to Core/VTI (the first VTI slice)
    renamed = PieSpec.model_validate({"name": "Two cores", "slices": [
        TWO_CORES.slices[0].model_dump(),
        {"target": 40, "pie": {"name": "Satellite", "slices": [{"symbol": "VTI", "target": 100}]}}]})
    assert (await bus.request(SetPie(account_id=account, pie=renamed))).ok
    pending = await fetch(settings.database_url, "SELECT path, side FROM pie.intents "
                                                 "WHERE account_id = $1 AND status = 'pending' ORDER BY path", account)
    assert [tuple(r) for r in pending] == [("Core/VTI", "buy"), ("Core/VXUS", "buy"), ("Satellite/VTI", "buy")]
    await fill_batch(bus, settings, account, buys, PRICES, cash="0.00", version=4)
    assert await slice_holdings(settings, account) == [("Core/VTI", D("0.18000"), D("45.00")),
                                                       ("Core/VXUS", D("0.75000"), D("45.00")),
                                                       ("Satellite/VTI", D("0.24000"), D("60.00"))]
    assert await submitted(intents_queue, account) == []


async def test_editing_targets_trades_nothing(pie, bus, settings, intents_queue):
    account = await invested_account(bus, settings, intents_queue, SIXTY_FORTY)
    edited = PieSpec.model_validate({"name": "Balanced", "slices": [{"symbol": "VTI", "target": 30},
                                                                    {"symbol": "BND", "target": 70}]})
    reply = await bus.request(SetPie(account_id=account, pie=edited))
    assert reply.ok and reply.result["version"] == 2  # each change of the pie: one version more
    assert await submitted(intents_queue, account) == []


async def test_settings_change_and_auto_invest_respects_them(pie, bus, settings, intents_queue):
    account = await open_account_with_pie(bus, settings, SIXTY_FORTY)
    reply = await bus.request(SetSettings(account_id=account))
    assert reply.result == {"account_id": account, "auto_invest": True, "minimum_cash": "0.00", "dividends": "cash"}
    reply = await bus.request(SetSettings(account_id=account, minimum_cash=D("100.00"), dividends="reinvest"))
    assert (reply.result["minimum_cash"], reply.result["dividends"]) == ("100.00", "reinvest")
    await publish(bus, cash_changed(account, "124.99", "124.99", version=1))  # 24.99 above the minimum: waits
    await publish(bus, cash_changed(account, "125.00", "0.01", version=2))
    (batch,) = await eventually(lambda: submitted(intents_queue, account))
    assert trades(batch) == {"VTI": ("buy", D("15.00")), "BND": ("buy", D("10.00"))}
    refused = await bus.request(SetSettings(account_id="nobody-" + uuid.uuid4().hex[:8], auto_invest=False))
    assert not refused.ok and "unknown account" in refused.reason


async def test_model_pies_are_listed_and_applied_by_name(pie, bus, settings):
    account = await open_account_with_pie(bus, settings, SIXTY_FORTY)
    models = {m["key"]: m for m in (await bus.request(ListModels())).result["models"]}
    assert {"three-fund", "balanced-60-40", "all-equity-growth", "core-satellite", "target-date-2055"} <= set(models)
    reply = await bus.request(ApplyModel(account_id=account, model="three-fund"))
    assert reply.ok and reply.result["pie"] == models["three-fund"]["pie"]
    # a model with a security the pie has no price for (another module's market may have sent one)
    await fetchval(settings.database_url, "DELETE FROM pie.prices WHERE symbol = 'VOO' RETURNING symbol")
    missing = await bus.request(ApplyModel(account_id=account, model="all-equity-growth"))
    assert not missing.ok and any("unknown symbol VOO" in e for e in missing.errors)
    unknown = await bus.request(ApplyModel(account_id=account, model="nope"))
    assert not unknown.ok and "unknown model pie" in unknown.reason


async def test_a_manual_rebalance_trades_back_to_target_states_the_gain_and_can_be_cancelled(
        pie, bus, settings, intents_queue):
    account = await invested_account(bus, settings, intents_queue, SIXTY_FORTY)
    await move_prices(bus, settings, {"VTI": D("500.00")})
    # VTI 0.24 x 500 = 120.00 (cost 60), BND 0.55172 x 72.50 = 39.9997 -> 39.99 (rounded down): of 159.99,
    # 95.99 / 64.00. Sell 24.01 of VTI (gain 24.01 - 60 x 24.01 / 120 = 12.005 -> 12.01), buy 24.01 of BND.
    reply = await bus.request(Rebalance(account_id=account))
    assert reply.ok, reply.reason
    plan = reply.result
    assert [(t["symbol"], t["side"], t["amount"]) for t in plan["trades"]] == [("VTI", "sell", "24.01"),
                                                                              ("BND", "buy", "24.01")]
    assert plan["estimated_gain"] == "12.01"
    (batch,) = await eventually(lambda: submitted(intents_queue, account))
    assert str(batch.batch_id) == plan["batch_id"]
    cancelled = await bus.request(CancelRebalance(account_id=account, batch_id=batch.batch_id,
                                                  intent_ids=[i.intent_id for i in batch.intents]))
    assert len(cancelled.result["cancelled"]) == 2
    statuses = await fetch(settings.database_url, "SELECT DISTINCT status FROM pie.intents WHERE batch_id = $1",
                           batch.batch_id)
    assert [r["status"] for r in statuses] == ["cancelled"]
    refused = await bus.request(Rebalance(account_id=account, path="Nope"))
    assert not refused.ok and "no pie at path" in refused.reason
    await move_prices(bus, settings, PRICES)


async def test_a_held_withdrawal_sells_the_overweight_slice_for_the_shortfall_and_keeps_the_cash_back(
        pie, bus, settings, intents_queue):
    account = await invested_account(bus, settings, intents_queue, SIXTY_FORTY)
    await move_prices(bus, settings, {"VTI": D("500.00")})  # VTI 120, BND 39.99
    await publish(bus, cash_changed(account, "20.00", "20.00", version=3))  # under $25: not invested
    wid = uuid.uuid4()
    await publish(bus, WithdrawalPending(account_id=account, withdrawal_id=wid, amount=D("50.00"), cash=D("20.00"),
                                         shortfall=D("30.00"), requested_at=NOW))
    (sale,) = await eventually(lambda: submitted(intents_queue, account))
    assert trades(sale) == {"VTI": ("sell", D("30.00"))}  # cash first; VTI is the overweight slice
    # The proceeds arrive: nothing is auto-invested, the cash waits for the ledger's payout.
    await fill_batch(bus, settings, account, sale, {"VTI": D("500.00")}, cash="50.00", version=4)
    assert await submitted(intents_queue, account) == []
    paid = await publish(bus, CashChanged(account_id=account, cash=D("0.00"), delta=D("-50.00"), cause="withdrawal",
                                          cause_id=str(wid), version=5))
    await eventually(lambda: handled(settings, paid))
    assert await fetchval(settings.database_url, "SELECT status FROM pie.withdrawals WHERE withdrawal_id = $1",
                          wid) == "paid"
    await move_prices(bus, settings, PRICES)


async def with_pending_buys(bus, settings, intents_queue, amount: str) -> tuple[str, IntentsSubmitted]:
    """An invested account whose deposit of ``amount`` (version 3) is pending as buys."""
    account = await invested_account(bus, settings, intents_queue, SIXTY_FORTY)
    await publish(bus, cash_changed(account, amount, amount, version=3))
    (buys,) = await eventually(lambda: submitted(intents_queue, account))
    assert sum(i.amount for i in buys.intents) == D(amount)
    return account, buys


def withdrawal_pending(account: str, amount: str, cash: str, shortfall: str) -> WithdrawalPending:
    return WithdrawalPending(account_id=account, withdrawal_id=uuid.uuid4(), amount=D(amount), cash=D(cash),
                             shortfall=D(shortfall), requested_at=NOW)


async def test_a_withdrawal_sells_the_ledgers_shortfall_whatever_buys_are_pending_or_booked_meanwhile(
        pie, bus, settings, intents_queue):
    account, buys = await with_pending_buys(bus, settings, intents_queue, "1000.00")
    await publish(bus, cash_changed(account, "1020.00", "20.00", version=4))  # under $25: not invested
    # The ledger holds a withdrawal of 50.00 with 20.00 free (the buys frozen, or booked, or
    # still pending and then cut at their window: it comes before them there). Its event may
    # be handled before or after the pie has heard of the booked buys, here behind a backlog
    # of other accounts' ledger events: either way the pie sells the 30.00 short, no more.
    other = await open_account_with_pie(bus, settings, SIXTY_FORTY)
    assert (await bus.request(SetSettings(account_id=other, auto_invest=False))).ok
    await asyncio.gather(*(publish(bus, cash_changed(other, f"{v}.00", "1.00", version=v)) for v in range(1, 501)))
    part = await account_fills(settings, account, buys, PRICES, cash="20.00", version=5)
    await publish(bus, fills_batch(part))
    held = await publish(bus, withdrawal_pending(account, "50.00", "20.00", "30.00"))
    await eventually(lambda: handled(settings, held), timeout=60)
    (sale,) = await eventually(lambda: submitted(intents_queue, account))
    assert sum(i.amount for i in sale.intents) == D("30.00")


async def test_a_cash_change_while_a_withdrawal_waits_for_its_sells_sells_nothing_more(
        pie, bus, settings, intents_queue):
    account, _ = await with_pending_buys(bus, settings, intents_queue, "500.00")
    held = await publish(bus, withdrawal_pending(account, "800.00", "500.00", "300.00"))
    await eventually(lambda: handled(settings, held))
    (sale,) = await eventually(lambda: submitted(intents_queue, account))
    assert sum(i.amount for i in sale.intents) == D("300.00")
    # $1.00 more arrives before the window: the $300.00 of sells still cover the withdrawal
    # (the pending buys come after it at the window), so nothing more is sold
    changed = await publish(bus, cash_changed(account, "501.00", "1.00", version=4))
    await eventually(lambda: handled(settings, changed))
    assert await submitted(intents_queue, account) == []


async def test_withdrawals_waiting_for_proceeds_to_settle_sell_nothing_and_keep_their_cash_back(
        pie, bus, settings, intents_queue):
    account = await invested_account(bus, settings, intents_queue, SIXTY_FORTY)
    await publish(bus, cash_changed(account, "20.00", "20.00", version=3))  # under $25: not invested
    # The ledger holds both until the sale proceeds settle (shortfall 0); the second's cash
    # already leaves out the first, so the first is not taken out of it again.
    first, second = uuid.uuid4(), uuid.uuid4()
    for wid, amount, cash in ((first, "12.00", "20.00"), (second, "8.00", "8.00")):
        held = await publish(bus, WithdrawalPending(account_id=account, withdrawal_id=wid, amount=D(amount),
                                                    cash=D(cash), shortfall=D("0.00"), requested_at=NOW))
        await eventually(lambda held=held: handled(settings, held))
    assert await submitted(intents_queue, account) == []  # nothing sold
    assert await fetchval(settings.database_url, "SELECT sum(amount) FROM pie.withdrawals WHERE account_id = $1 "
                                                 "AND status = 'open'", account) == D("20.00")
    # a deposit of 25.00: auto-invest takes it and leaves the 20.00 for the withdrawals
    await publish(bus, cash_changed(account, "45.00", "25.00", version=4))
    (buys,) = await eventually(lambda: submitted(intents_queue, account))
    assert sum(i.amount for i in buys.intents) == D("25.00") and {i.side for i in buys.intents} == {Side.BUY}


async def test_a_withdrawal_above_what_the_account_holds_is_refused_with_the_reason(pie, bus, settings):
    account = await open_account_with_pie(bus, settings, SIXTY_FORTY)
    channel = await bus.connection.channel()
    refusals = await channel.declare_queue(exclusive=True, auto_delete=True)
    await refusals.bind(EVENTS_EXCHANGE, routing_key="pie.withdrawal.refused")
    await publish(bus, cash_changed(account, "20.00", "20.00", version=1))
    wid = uuid.uuid4()
    await publish(bus, WithdrawalPending(account_id=account, withdrawal_id=wid, amount=D("20.01"), cash=D("20.00"),
                                         shortfall=D("0.01"), requested_at=NOW))
    message = await eventually(lambda: refusals.get(fail=False, no_ack=True))
    body = json.loads(message.body)
    assert (body["withdrawal_id"], body["reason"]) == (
        str(wid), "withdrawal of $20.01 exceeds the withdrawable value $20.00 (cash $20.00 + investments $0.00)")
    await channel.close()


async def test_cash_changed_by_fills_is_left_to_the_fills_booked_handler(pie, bus, settings, intents_queue):
    """The ledger sends CashChanged(cause=fill) beside FillsBooked and they are handled
    concurrently; only FillsBooked, which marks the fills first, may invest the cash."""
    account = await open_account_with_pie(bus, settings, SIXTY_FORTY)
    change = CashChanged(account_id=account, cash=D("100.00"), delta=D("100.00"), cause="fill",
                         cause_id=str(uuid.uuid4()), version=1)
    message_id = await publish(bus, change)
    await eventually(lambda: handled(settings, message_id))
    assert await fetchval(settings.database_url, "SELECT cash FROM pie.accounts WHERE account_id = $1",
                          account) == D("100.00")
    assert await fetchval(settings.database_url, "SELECT count(*) FROM pie.intents WHERE account_id = $1",
                          account) == 0
    assert await submitted(intents_queue, account) == []


async def test_buys_a_window_drops_for_good_stop_holding_cash_as_pending(pie, bus, settings, intents_queue):
    from shared.contracts import IntentsRejected

    account = await open_account_with_pie(bus, settings, SIXTY_FORTY)
    await publish(bus, cash_changed(account, "100.00", "100.00", version=1))
    batch = (await eventually(lambda: submitted(intents_queue, account)))[0]
    dropped = next(i for i in batch.intents if i.symbol == "BND")
    message_id = await publish(bus, IntentsRejected(account_id=account, window_id=uuid.uuid4(),
                                                    reasons={str(dropped.intent_id): "under $1 after funding"}))
    await eventually(lambda: handled(settings, message_id))
    view = (await bus.request(GetPortfolio(account_id=account))).result
    assert view["pending_buys"] == "60.00"
    row = await fetchval(settings.database_url, "SELECT status || ': ' || reason FROM pie.intents "
                                                "WHERE intent_id = $1", dropped.intent_id)
    assert row == "rejected: under $1 after funding"


async def test_raise_cash_sells_the_most_overweight_slices_at_liquidation_priority_once(
        pie, bus, settings, intents_queue):
    account = await invested_account(bus, settings, intents_queue, SIXTY_FORTY)  # VTI 60, BND 40
    await move_prices(bus, settings, {"VTI": D("500.00")})  # VTI 120, BND 39.99: VTI overweight
    request = RaiseCash(account_id=account, request_id=uuid.uuid4(), amount=D("30.00"), reason="margin call")
    reply = await bus.request(request)
    assert reply.ok and (reply.result["planned"], reply.result["reason"]) == ("30.00", "margin call")
    (sale,) = await eventually(lambda: submitted(intents_queue, account))
    assert trades(sale) == {"VTI": ("sell", D("30.00"))}
    assert {i.source for i in sale.intents} == {IntentSource.LIQUIDATION}
    # the answer names the batch and its sells (the margin service's liquidation's own)
    assert (reply.result["batch_id"], reply.result["intent_ids"]) == (
        str(sale.batch_id), [str(i.intent_id) for i in sale.intents])
    again = await bus.request(request.model_copy())  # the same request under a new message id
    assert again.ok and (again.result["batch_id"], again.result["intent_ids"]) == (
        reply.result["batch_id"], reply.result["intent_ids"])
    assert await submitted(intents_queue, account) == []
    await move_prices(bus, settings, PRICES)


async def test_raise_cash_above_the_holdings_sells_everything_by_quantity(pie, bus, settings, intents_queue):
    account = await invested_account(bus, settings, intents_queue, SIXTY_FORTY)  # 0.24 VTI, 0.55172 BND
    reply = await bus.request(RaiseCash(account_id=account, request_id=uuid.uuid4(), amount=D("1000.00"),
                                        reason="margin call"))
    assert reply.ok and reply.result["planned"] == "99.99"  # what the holdings are worth at the last prices
    (sale,) = await eventually(lambda: submitted(intents_queue, account))
    assert trades(sale) == {"VTI": ("sell", "0.24000 shares"), "BND": ("sell", "0.55172 shares")}


async def test_a_negative_cash_balance_is_covered_by_sells_in_the_next_window(pie, bus, settings, intents_queue):
    account = await invested_account(bus, settings, intents_queue, SIXTY_FORTY)
    await move_prices(bus, settings, {"VTI": D("500.00")})
    await publish(bus, CashChanged(account_id=account, cash=D("-3.00"), delta=D("-3.00"), cause="fee",
                                   cause_id=str(uuid.uuid4()), version=3))
    (sale,) = await eventually(lambda: submitted(intents_queue, account))
    assert trades(sale) == {"VTI": ("sell", D("3.00"))} and sale.intents[0].source is IntentSource.LIQUIDATION
    # Another change while the sell is pending does not sell again.
    await publish(bus, CashChanged(account_id=account, cash=D("-3.00"), delta=D("0.00"), cause="fee",
                                   cause_id=str(uuid.uuid4()), version=4))
    assert await submitted(intents_queue, account) == []
    await move_prices(bus, settings, PRICES)


async def test_a_withdrawal_still_short_after_its_sells_filled_sells_again_then_is_refused_when_nothing_is_left(
        pie, bus, settings, intents_queue):
    account = await invested_account(bus, settings, intents_queue, SIXTY_FORTY)  # VTI 60, BND 40 (39.99)
    channel = await bus.connection.channel()
    refusals = await channel.declare_queue(exclusive=True, auto_delete=True)
    await refusals.bind(EVENTS_EXCHANGE, routing_key="pie.withdrawal.refused")
    wid = uuid.uuid4()
    await publish(bus, WithdrawalPending(account_id=account, withdrawal_id=wid, amount=D("99.99"), cash=D("0.00"),
                                         shortfall=D("99.99"), requested_at=NOW))
    (sale,) = await eventually(lambda: submitted(intents_queue, account))
    assert trades(sale) == {"VTI": ("sell", "0.24000 shares"), "BND": ("sell", "0.55172 shares")}
    # The prices fell before the window: the whole holdings raised only $90.00.
    await fill_batch(bus, settings, account, sale, {"VTI": D("225.00"), "BND": D("65.3103")}, cash="90.00",
                     version=4)
    await move_prices(bus, settings, {"VTI": D("225.00"), "BND": D("65.3103")})
    await publish(bus, cash_changed(account, "90.00", "0.00", version=5))
    message = await eventually(lambda: refusals.get(fail=False, no_ack=True))
    body = json.loads(message.body)
    assert body["withdrawal_id"] == str(wid) and "nothing left to sell" in body["reason"]
    await channel.close()
    await move_prices(bus, settings, PRICES)


async def test_shares_a_customers_order_bought_join_their_slice(pie, bus, settings, intents_queue):
    account = await invested_account(bus, settings, intents_queue, SIXTY_FORTY)  # 0.24 VTI, 0.55172 BND
    order_fill = Fill(intent_id=uuid.uuid4(), account_id=account, symbol="VTI", side=Side.BUY,
                      quantity=D("0.10000"), amount=D("25.00"), price=D("250.00"))
    await publish(bus, fills_batch(AccountFills(account_id=account, window_id=uuid.uuid4(), fills=[order_fill],
                                                cash=D("0.00"), positions={"VTI": D("0.34000"), "BND": D("0.55172")},
                                                version=3, booked_at=NOW)))
    rows = await eventually(lambda: fetch(settings.database_url, "SELECT path, quantity, cost FROM pie.slice_holdings "
                                                                 "WHERE account_id = $1 AND path = 'VTI' "
                                                                 "AND quantity = 0.34", account))
    assert [tuple(r) for r in rows] == [("VTI", D("0.34000"), D("85.00"))]


async def test_a_customers_sell_comes_from_the_slices_holding_the_security_and_none_goes_below_zero(
        pie, bus, settings, intents_queue):
    account = await invested_account(bus, settings, intents_queue, TWO_CORES)  # Core/VTI 0.12, Growth/VTI 0.16
    # An order sells 0.2 VTI ($50): more than Growth/VTI holds, less than the account's 0.28.
    sell = Fill(intent_id=uuid.uuid4(), account_id=account, symbol="VTI", side=Side.SELL,
                quantity=D("0.20000"), amount=D("50.00"), price=D("250.00"))
    booked = fills_batch(AccountFills(account_id=account, window_id=uuid.uuid4(), fills=[sell], cash=D("50.00"),
                                      positions={"VTI": D("0.08000"), "VXUS": D("0.50000")}, version=3,
                                      booked_at=NOW))
    first = await publish(bus, booked)
    await eventually(lambda: handled(settings, first))
    again = await publish(bus, booked)  # the same fills under another id change nothing
    await eventually(lambda: handled(settings, again))
    # In proportion to their shares, 12:16; the slices add up to the ledger's 0.08 VTI.
    assert await slice_holdings(settings, account) == [("Core/VTI", D("0.03429"), D("8.57")),
                                                       ("Core/VXUS", D("0.50000"), D("30.00")),
                                                       ("Growth/VTI", D("0.04571"), D("11.43"))]
    parts = await fetch(settings.database_url, "SELECT path, quantity, status FROM pie.intents "
                                               "WHERE account_id = $1 AND source = 'order' ORDER BY path", account)
    assert [tuple(r) for r in parts] == [("Core/VTI", D("0.08571"), "filled"), ("Growth/VTI", D("0.11429"), "filled")]


async def test_a_sell_that_delivered_more_shares_than_its_slice_held_takes_the_rest_from_the_securitys_other_slice(
        pie, bus, settings, intents_queue):
    account = await invested_account(bus, settings, intents_queue, TWO_CORES)  # Core/VTI 0.12, Growth/VTI 0.16
    await move_prices(bus, settings, {"VTI": D("500.00")})  # Core $90 of 60%, Growth $80 of 40%: Growth overweight
    reply = await bus.request(RaiseCash(account_id=account, request_id=uuid.uuid4(), amount=D("20.00"),
                                        reason="margin call"))
    assert reply.ok
    (sale,) = await eventually(lambda: submitted(intents_queue, account))
    assert trades(sale) == {"VTI": ("sell", D("20.00"))}
    assert await fetchval(settings.database_url, "SELECT path FROM pie.intents WHERE intent_id = $1",
                          sale.intents[0].intent_id) == "Growth/VTI"
    # The price fell to $100 by the window: $20.00 took 0.2 shares, 0.04 more than Growth/VTI held.
    fill = Fill(intent_id=sale.intents[0].intent_id, account_id=account, symbol="VTI", side=Side.SELL,
                quantity=D("0.20000"), amount=D("20.00"), price=D("100.00"))
    mid = await publish(bus, fills_batch(AccountFills(account_id=account, window_id=uuid.uuid4(), fills=[fill],
                                                      cash=D("20.00"), positions={"VTI": D("0.08000"),
                                                                                  "VXUS": D("0.50000")},
                                                      version=3, booked_at=NOW)))
    await eventually(lambda: handled(settings, mid))
    assert await slice_holdings(settings, account) == [("Core/VTI", D("0.08000"), D("20.00")),
                                                       ("Core/VXUS", D("0.50000"), D("30.00")),
                                                       ("Growth/VTI", D("0.00000"), D("0.00"))]
    await move_prices(bus, settings, PRICES)


async def test_a_dividend_with_reinvest_on_buys_more_of_the_paying_security(pie, bus, settings, intents_queue):
    account = await invested_account(bus, settings, intents_queue, SIXTY_FORTY)
    assert (await bus.request(SetSettings(account_id=account, dividends="reinvest"))).ok
    await publish(bus, CashChanged(account_id=account, cash=D("1.50"), delta=D("1.50"), cause="dividend",
                                   cause_id="dividend:BND:2026-11-20", version=3))
    (batch,) = await eventually(lambda: submitted(intents_queue, account))
    assert trades(batch) == {"BND": ("buy", D("1.50"))}  # under $25: auto-invest alone would wait
    await publish(bus, CashChanged(account_id=account, cash=D("2.40"), delta=D("0.90"), cause="dividend",
                                   cause_id="dividend:VTI:2026-11-21", version=4))
    assert await submitted(intents_queue, account) == []  # under $1: stays cash


async def test_a_dividend_with_the_cash_setting_is_cash_like_any_other(pie, bus, settings, intents_queue):
    account = await invested_account(bus, settings, intents_queue, SIXTY_FORTY)
    await publish(bus, CashChanged(account_id=account, cash=D("1.50"), delta=D("1.50"), cause="dividend",
                                   cause_id="dividend:BND:2026-11-20", version=3))
    assert await submitted(intents_queue, account) == []


async def test_a_removed_delisted_slice_is_kept_outside_the_pie_and_sold_once_listed_again(
        pie, bus, settings, intents_queue):
    gone, kept = new_symbol(), new_symbol()
    prices = {gone: D("10.00"), kept: D("20.00")}
    priced = await publish(bus, PricesChanged(prices=prices, as_of=PRICED_AT))
    await eventually(lambda: handled(settings, priced))
    spec = PieSpec.model_validate({"name": "Two", "slices": [{"symbol": gone, "target": 50},
                                                             {"symbol": kept, "target": 50}]})
    account = await open_account_with_pie(bus, settings, spec)
    keeper = await open_account_with_pie(bus, settings, spec)  # keeps the security in its pie
    for holder in (account, keeper):
        await publish(bus, cash_changed(holder, "100.00", "100.00", version=1))
        (first,) = await eventually(lambda holder=holder: submitted(intents_queue, holder))
        await fill_batch(bus, settings, holder, first, prices, cash="0.00", version=2)  # 5 shares of each

    def status(active: bool, minutes: int) -> SecurityStatusChanged:
        return SecurityStatusChanged(symbol=gone, active=active, reason=None if active else "acquired for cash",
                                     price=D("10.00"), changed_at=PRICED_AT + timedelta(minutes=minutes))

    delisted = await publish(bus, status(False, 1))
    await eventually(lambda: handled(settings, delisted))
    only_kept = PieSpec.model_validate({"name": "One", "slices": [{"symbol": kept, "target": 100}]})
    assert (await bus.request(SetPie(account_id=account, pie=only_kept))).ok
    assert await submitted(intents_queue, account) == []  # no sale the venue would refuse
    view = (await bus.request(GetPortfolio(account_id=account))).result
    assert view["outside"] == [{"path": gone, "symbol": gone, "quantity": "5.00000", "value": "50.00",
                                "delisted": "acquired for cash"}]
    assert (view["invested"], view["total"], view["needs_adjustment"]) == ("100.00", "100.00", False)

    # listed again: the shares are sold as a removed slice's, the proceeds for the pie
    listed = await publish(bus, status(True, 2))
    await eventually(lambda: handled(settings, listed))
    (sale,) = await eventually(lambda: submitted(intents_queue, account))
    assert trades(sale) == {gone: ("sell", "5.00000 shares")}
    assert await submitted(intents_queue, keeper) == []  # its pie still has the security: nothing to sell
    again = await publish(bus, status(True, 3))  # a repeated announcement sells nothing more
    await eventually(lambda: handled(settings, again))
    assert await submitted(intents_queue, account) == []
    view = (await bus.request(GetPortfolio(account_id=account))).result
    assert [(h["path"], h["delisted"]) for h in view["outside"]] == [(gone, None)]  # until the sale fills


async def test_a_delisted_security_needs_adjustment_and_the_automated_trades_leave_it_out(pie, bus, settings,
                                                                                          intents_queue):
    gone, kept = new_symbol(), new_symbol()
    priced = await publish(bus, PricesChanged(prices={gone: D("10"), kept: D("20")}, as_of=PRICED_AT))
    await eventually(lambda: handled(settings, priced))
    spec = PieSpec.model_validate({"name": "Two", "slices": [
        {"target": 50, "pie": {"name": "Old", "slices": [{"symbol": gone, "target": 100}]}},
        {"symbol": kept, "target": 50}]})
    account = await open_account_with_pie(bus, settings, spec)

    def status(active: bool, at: datetime) -> SecurityStatusChanged:
        return SecurityStatusChanged(symbol=gone, active=active, reason=None if active else "acquired for cash",
                                     price=D("10"), changed_at=at)

    delisted = await publish(bus, status(False, PRICED_AT))
    await eventually(lambda: handled(settings, delisted))
    view = (await bus.request(GetPortfolio(account_id=account))).result
    assert (view["inactive"], view["needs_adjustment"]) == ([gone], True)

    # a deposit buys the tradable slice only
    await publish(bus, cash_changed(account, "100.00", "100.00", version=1))
    (batch,) = await eventually(lambda: submitted(intents_queue, account))
    assert [(i.symbol, i.side, i.amount) for i in batch.intents] == [(kept, "buy", D("100.00"))]

    reply = await bus.request(Rebalance(account_id=account, path="Old"))
    assert not reply.ok and "pie 'Old' has nothing to trade: every security in it is delisted" in reply.reason

    # the holder may keep it while adjusting the pie, but no pie may add it
    kept_targets = spec.model_copy(update={"slices": [spec.slices[0].model_copy(update={"target": 30}),
                                                      spec.slices[1].model_copy(update={"target": 70})]})
    assert (await bus.request(SetPie(account_id=account, pie=kept_targets))).ok
    other = await open_account_with_pie(bus, settings, SIXTY_FORTY)
    reply = await bus.request(SetPie(account_id=other, pie=spec))
    assert not reply.ok and f"{gone} is delisted (acquired for cash) and cannot be added to a pie" in reply.reason

    # an older announcement changes nothing; listed again, the pie no longer needs adjustment
    stale = await publish(bus, status(True, PRICED_AT - timedelta(minutes=1)))
    await eventually(lambda: handled(settings, stale))
    assert (await bus.request(GetPortfolio(account_id=account))).result["needs_adjustment"]
    listed = await publish(bus, status(True, PRICED_AT + timedelta(minutes=1)))
    await eventually(lambda: handled(settings, listed))
    view = (await bus.request(GetPortfolio(account_id=account))).result
    assert (view["inactive"], view["needs_adjustment"]) == ([], False)
