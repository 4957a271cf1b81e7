"""Halts through the real ledger, market, window and notification services: intents in a
halted security (or during a market-wide circuit breaker) carry over to the next window and
the holder is told why; the books reconcile after every window."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal as D

import pytest

from shared import topology
from shared.contracts import AbandonWindow, GetFeed, HaltSecurity, Intent, IntentSource, ResumeSecurity, SetIndexLevel, Side
from tests.conftest import make_service
from tests.integration.test_window_ledger import booked, intent, open_funded, reconcile, submit
from tests.integration.test_window_market import close_window, new_symbol, set_prices, windows
from tests.support import eventually, fetch, fetchval

pytestmark = pytest.mark.integration


async def feed_kinds(bus, account: str, kind: str) -> list[dict]:
    reply = await bus.request(GetFeed(account_id=account))
    assert reply.ok, reply
    return [e for e in reply.result["entries"] if e["kind"] == kind]


@pytest.fixture
async def system(service_factory, bus, settings):
    await (await bus.channel.get_queue(topology.WINDOW_INTENTS.name, ensure=False)).purge()
    async with service_factory("ledger").running(), service_factory("notification").running(), \
            service_factory("window").running():
        yield


async def test_a_halted_security_carries_over_and_the_holder_is_told_why(system, service_factory, bus, settings):
    async with service_factory("market").running():
        await close_window(bus)
        halted, trading = new_symbol(), new_symbol()
        await set_prices(bus, **{halted: "10.00", trading: "20.00"})
        account = await open_funded(bus, settings, "100.00")
        stuck, fine = intent(account, halted, Side.BUY, "30.00"), intent(account, trading, Side.BUY, "40.00")
        await submit(bus, settings, stuck, fine)
        assert (await bus.request(HaltSecurity(symbol=halted, reason="news pending"))).ok

        first = await close_window(bus)
        await booked(settings, first.window_id)
        rows = await fetch(settings.database_url, 'SELECT intent_id, status, reason, window_id FROM "window".intents '
                                                  "WHERE account_id = $1", account)
        by_id = {r["intent_id"]: r for r in rows}
        assert (by_id[stuck.intent_id]["status"], by_id[stuck.intent_id]["reason"]) == ("pending", "news pending")
        assert by_id[fine.intent_id]["status"] == "frozen" and by_id[fine.intent_id]["window_id"] == first.window_id
        assert await fetch(settings.database_url, 'SELECT 1 FROM "window".fills WHERE intent_id = $1', fine.intent_id)
        [note] = await eventually(lambda: feed_kinds(bus, account, "intents_carried_over"))
        assert halted in note["message"] and "news pending" in note["message"]
        view = (await fetch(settings.database_url, 'SELECT summary FROM "window".windows WHERE window_id = $1',
                            first.window_id))[0]
        assert '"carried_over": 1' in view["summary"] and "news pending" in view["summary"]
        await reconcile(settings, first.window_id)

        assert (await bus.request(ResumeSecurity(symbol=halted))).ok
        second = await close_window(bus)
        assert [o.symbol for o in second.orders] == [halted]
        await booked(settings, second.window_id)
        await reconcile(settings, second.window_id)


async def test_a_market_wide_circuit_breaker_carries_every_intent_over(system, bus, settings):
    market = make_service("market", settings)
    market.clock.set(datetime(2026, 1, 5, 15, 0, tzinfo=UTC))  # 10:00 New York, a day long past
    async with market.running():
        await close_window(bus)
        symbol = new_symbol()
        await set_prices(bus, **{symbol: "10.00"})
        account = await open_funded(bus, settings, "100.00")
        await submit(bus, settings, intent(account, symbol, Side.BUY, "30.00"))
        reply = await bus.request(SetIndexLevel(level="4650.00", prior_close="5000.00"))  # -7%: level 1
        assert reply.ok and reply.result["market_wide"] == "circuit breaker level 1"
        closing = await close_window(bus)
        [note] = await eventually(lambda: feed_kinds(bus, account, "intents_carried_over"))
        assert "circuit breaker level 1" in note["message"]
        # Nothing traded, nothing to book: the cash the ledger held for the buy is free again.
        await eventually(lambda: fetchval(settings.database_url, "SELECT count(*) = 0 FROM ledger.window_holds "
                                                                 "WHERE window_id = $1", closing.window_id))
        market.clock.set(datetime(2026, 1, 5, 15, 16, tzinfo=UTC))  # the 15 minutes are over
        after = await close_window(bus)
        assert after.window_id != closing.window_id and [o.symbol for o in after.orders] == [symbol]
        await booked(settings, after.window_id)
        await reconcile(settings, after.window_id)


async def test_a_buy_paid_by_a_halted_sale_is_funded_again_without_it(system, service_factory, bus, settings):
    """The account's $70 buy counted on a $50 sale of a security that turns out halted: it is
    scaled to the $40 of cash the account has, never driving its cash below zero; the venue
    already bought for $70, so the firm's residue keeps the rest of the shares."""
    async with service_factory("market").running():
        await close_window(bus)
        halted, bought = new_symbol(), new_symbol()
        await set_prices(bus, **{halted: "10.00", bought: "20.00"})
        account = await open_funded(bus, settings, "100.00")
        await submit(bus, settings, intent(account, halted, Side.BUY, "60.00"))
        first = await close_window(bus)
        await booked(settings, first.window_id)  # 6 shares held, $40.00 cash

        sale, buy = intent(account, halted, Side.SELL, "50.00"), intent(account, bought, Side.BUY, "70.00")
        await submit(bus, settings, sale, buy)
        assert (await bus.request(HaltSecurity(symbol=halted, reason="news pending"))).ok
        second = await close_window(bus)
        assert [(o.symbol, o.notional) for o in second.orders if o.symbol == bought] == [(bought, D("70.00"))]
        await booked(settings, second.window_id)
        [fill] = await fetch(settings.database_url, 'SELECT quantity, amount FROM "window".fills '
                                                    "WHERE intent_id = $1", buy.intent_id)
        assert (fill["quantity"], fill["amount"]) == (D("2.00000"), D("40.00"))
        [residue] = await fetch(settings.database_url, 'SELECT quantity, amount FROM "window".residues '
                                                       "WHERE window_id = $1", second.window_id)
        assert (residue["quantity"], residue["amount"]) == (D("1.50000"), D("-30.00"))  # the firm's 1.5 shares
        cash = await fetch(settings.database_url, "SELECT amount FROM ledger.balances WHERE book = $1",
                           f"customer:{account}:cash")
        assert cash[0]["amount"] == D("0")
        await reconcile(settings, second.window_id)
        assert (await bus.request(ResumeSecurity(symbol=halted))).ok
        third = await close_window(bus)  # the carried-over sale trades now
        await booked(settings, third.window_id)


async def test_a_price_beyond_the_windows_limits_carries_the_intents_over_instead_of_overspending(
        system, service_factory, bus, settings):
    """9.5 shares at the window's last price of $10 are funded with $99.75 of the account's
    $100 (the price plus the 5% margin). The venue's price is $10.60 by then (a move the
    window has not heard of yet): the shares would cost $100.70, so the venue does not trade
    the order outside the window's limits ($9.50-$10.50), the intent carries over and the
    holder is told why; the next window, at $10, pays $95."""
    async with service_factory("market").running():
        await close_window(bus)
        symbol = new_symbol()
        await set_prices(bus, **{symbol: "10.00"})
        account = await open_funded(bus, settings, "100.00")
        shares = Intent(intent_id=uuid.uuid4(), account_id=account, symbol=symbol, side=Side.BUY, quantity="9.5",
                        source=IntentSource.ORDER)
        await submit(bus, settings, shares)
        await fetch(settings.database_url, "UPDATE market.prices SET price = 10.60 WHERE symbol = $1", symbol)
        first = await close_window(bus)
        [note] = await eventually(lambda: feed_kinds(bus, account, "intents_carried_over"))
        assert "would trade at 10.60, outside 9.500000-10.500000" in note["message"]
        [row] = await fetch(settings.database_url, 'SELECT status FROM "window".intents WHERE intent_id = $1',
                            shares.intent_id)
        assert row["status"] == "pending"
        await eventually(lambda: fetchval(settings.database_url, "SELECT count(*) = 0 FROM ledger.window_holds "
                                                                 "WHERE window_id = $1", first.window_id))

        await set_prices(bus, **{symbol: "10.00"})
        second = await close_window(bus)
        await booked(settings, second.window_id)
        [fill] = await fetch(settings.database_url, 'SELECT quantity, amount FROM "window".fills WHERE intent_id = $1',
                             shares.intent_id)
        assert (fill["quantity"], fill["amount"]) == (D("9.50000"), D("95.00"))
        assert await fetchval(settings.database_url, "SELECT amount FROM ledger.balances WHERE book = $1",
                              f"customer:{account}:cash") == D("5.00")
        await reconcile(settings, second.window_id)


async def test_an_operator_abandons_a_window_the_ledger_never_answered(service_factory, bus, settings):
    """The ledger is down (or dead-lettered the hold) while a window holds: an operator
    abandons it. Its intents wait for the next window and the holder is told; the hold the
    ledger makes when it comes back is released; the next window trades them."""
    url = settings.database_url
    await (await bus.channel.get_queue(topology.WINDOW_INTENTS.name, ensure=False)).purge()
    async with service_factory("notification").running(), service_factory("window").running(), \
            service_factory("market").running():
        async with service_factory("ledger").running():
            await close_window(bus)
            symbol = new_symbol()
            await set_prices(bus, **{symbol: "10.00"})
            account = await open_funded(bus, settings, "100.00")
        buy = intent(account, symbol, Side.BUY, "60.00")
        await submit(bus, settings, buy)
        stuck = await close_window(bus)  # the ledger is down: the window holds, its orders unsent
        assert await fetchval(url, 'SELECT status FROM "window".windows WHERE window_id = $1',
                              stuck.window_id) == "holding"
        waiting = (await windows(bus, unfinished=True))[str(stuck.window_id)]
        assert waiting["status"] == "holding" and waiting["waiting_for"].startswith("the ledger to hold its buys' cash")

        reply = await bus.request(AbandonWindow(window_id=stuck.window_id, reason="ledger hold lost"))
        assert reply.ok, reply
        assert reply.result["status"] == "abandoned"
        assert reply.result["summary"]["carried_over"] == 1
        assert reply.result["summary"]["abandoned"] == "ledger hold lost"
        [row] = await fetch(url, 'SELECT status, reason, window_id FROM "window".intents WHERE intent_id = $1',
                            buy.intent_id)
        assert (row["status"], row["window_id"]) == ("pending", None) and "ledger hold lost" in row["reason"]
        assert await fetchval(url, 'SELECT count(*) FROM "window".reservations WHERE window_id = $1',
                              stuck.window_id) == 0
        [note] = await eventually(lambda: feed_kinds(bus, account, "intents_carried_over"))
        assert "ledger hold lost" in note["message"]
        again = await bus.request(AbandonWindow(window_id=stuck.window_id, reason="again"))
        assert again.ok and again.result["summary"]["abandoned"] == "ledger hold lost"  # nothing more happens
        assert await fetchval(url, 'SELECT count(*) FROM "window".carried_over WHERE window_id = $1',
                              stuck.window_id) == 1
        assert str(stuck.window_id) not in await windows(bus, unfinished=True)  # abandoned: waits for nothing
        assert (await windows(bus, unfinished=False))[str(stuck.window_id)]["abandoned"] == "ledger hold lost"

        # The ledger back: it makes the hold it had queued, and releases it on the window's word.
        inbox = "SELECT count(*) FROM ledger.inbox WHERE routing_key = $1"
        holds, releases = await fetchval(url, inbox, "ledger.window.hold"), await fetchval(url, inbox,
                                                                                           "ledger.window.release")
        async with service_factory("ledger").running():
            await eventually(lambda: fetchval(url, inbox + " HAVING count(*) = $2", "ledger.window.hold", holds + 1))
            await eventually(lambda: fetchval(url, inbox + " HAVING count(*) = $2", "ledger.window.release",
                                              releases + 2))
            assert await fetchval(url, "SELECT count(*) FROM ledger.window_holds WHERE window_id = $1",
                                  stuck.window_id) == 0

            following = await close_window(bus)
            await booked(settings, following.window_id)
            [fill] = await fetch(url, 'SELECT window_id, amount FROM "window".fills WHERE intent_id = $1',
                                 buy.intent_id)
            assert (fill["window_id"], fill["amount"]) == (following.window_id, D("60.00"))
            assert await fetchval(url, "SELECT amount FROM ledger.balances WHERE book = $1",
                                  f"customer:{account}:cash") == D("40.00")
            await reconcile(settings, following.window_id)
            traded = await bus.request(AbandonWindow(window_id=following.window_id, reason="too late"))
            assert not traded.ok and "it has sent its orders to the venue" in traded.reason
