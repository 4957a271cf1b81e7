"""The window's NYSE schedule through the real services, on the service clock: a missed
window runs once when the service comes back, and windows missed in both sessions run as one,
each account taking what it had pending when its own started; the afternoon window trades
only the accounts that trade in it; intents are cancellable until their window starts, not
until the schedule's next check runs it."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from services.window.handlers import run_schedule
from shared import topology
from shared.contracts import CancelIntents, OpenAccount, Plan, SetTradeWindow, Side
from tests.conftest import make_service
from tests.integration.test_window_ledger import booked, intent, open_funded, reconcile, submit
from tests.integration.test_window_market import new_account, new_symbol, set_prices
from tests.support import eventually, fetch, fetchval

pytestmark = pytest.mark.integration


def window_at(settings, moment: datetime):
    # The schedule runs when the service starts and when a test calls it, never on its own
    # timer in the middle of a test that moves the clock.
    service = make_service("window", settings.model_copy(update={"window_schedule": True,
                                                                 "window_schedule_poll_seconds": 3600}))
    service.clock.set(moment)
    return service


@pytest.fixture
async def others(service_factory, bus, settings):
    await (await bus.channel.get_queue(topology.WINDOW_INTENTS.name, ensure=False)).purge()
    # each test starts the schedule afresh at its own moment
    await fetch(settings.database_url, """DO $$ BEGIN IF to_regclass('"window".slots') IS NOT NULL THEN
                                              DELETE FROM "window".slots; DELETE FROM "window".schedule;
                                          END IF; END $$""")
    async with service_factory("ledger").running(), service_factory("market").running():
        yield


async def test_a_window_missed_while_the_service_was_down_runs_once_when_it_comes_back(others, bus, settings):
    symbol = new_symbol()
    await set_prices(bus, **{symbol: "20.00"})
    before_the_morning = datetime(2026, 11, 25, 14, 0, tzinfo=UTC)  # 09:00 New York
    async with window_at(settings, before_the_morning).running():
        account = await open_funded(bus, settings, "100.00")
        mine = intent(account, symbol, Side.BUY, "50.00")
        await submit(bus, settings, mine)
    # Down over 09:30; back at 10:00: the 09:30 window runs now, once.
    async with window_at(settings, datetime(2026, 11, 25, 15, 0, tzinfo=UTC)).running() as window:
        window_id = await eventually(lambda: fetchval(
            settings.database_url, 'SELECT window_id FROM "window".intents WHERE intent_id = $1', mine.intent_id))
        assert await run_schedule(window) is None
        await booked(settings, window_id)
        await reconcile(settings, window_id)  # while the window runs: it hears the ledger's bookings
    async with window_at(settings, datetime(2026, 11, 25, 15, 30, tzinfo=UTC)).running() as window:
        assert await run_schedule(window) is None
    slots = await fetch(settings.database_url, 'SELECT session, window_id FROM "window".slots WHERE starts_at = $1',
                        datetime(2026, 11, 25, 14, 30, tzinfo=UTC))
    assert [(r["session"], r["window_id"]) for r in slots] == [("morning", window_id)]


async def test_windows_missed_in_both_sessions_run_once_each_account_taking_what_was_pending_when_its_own_started(
        others, bus, settings):
    symbol = new_symbol()
    await set_prices(bus, **{symbol: "20.00"})
    async with window_at(settings, datetime(2026, 12, 3, 13, 0, tzinfo=UTC)).running() as window:  # 08:00 NY
        morning, afternoon = await open_funded(bus, settings, "100.00"), await open_funded(bus, settings, "100.00")
        assert (await bus.request(SetTradeWindow(account_id=afternoon, session="afternoon"))).ok
        await eventually(lambda: fetchval(settings.database_url, 'SELECT session = $2 FROM "window".accounts '
                                                                 "WHERE account_id = $1", afternoon, "afternoon"))
        early = {a: intent(a, symbol, Side.BUY, "10.00") for a in (morning, afternoon)}
        for one in early.values():
            await submit(bus, settings, one)
        window.clock.set(datetime(2026, 12, 3, 17, 0, tzinfo=UTC))  # noon: the service is down from here
        late = {a: intent(a, symbol, Side.BUY, "10.00") for a in (morning, afternoon)}
        for one in late.values():
            await submit(bus, settings, one)
    # Down over 09:30 and 15:00; back at 15:05: one window for both, run once.
    async with window_at(settings, datetime(2026, 12, 3, 20, 5, tzinfo=UTC)).running() as window:
        window_id = await eventually(lambda: fetchval(
            settings.database_url, 'SELECT window_id FROM "window".intents WHERE intent_id = $1',
            early[morning].intent_id))
        assert await run_schedule(window) is None
        rows = await fetch(settings.database_url, 'SELECT intent_id, status, window_id FROM "window".intents '
                                                  "WHERE intent_id = ANY($1::uuid[])",
                           [i.intent_id for i in (*early.values(), *late.values())])
        window_of = {r["intent_id"]: r["window_id"] for r in rows}
        # the morning account's 09:30 window took what it had at 09:30; what it sent at noon
        # waits for the next morning; the afternoon account's 15:00 window took both of its own
        assert window_of[early[morning].intent_id] == window_id
        assert window_of[late[morning].intent_id] is None
        assert window_of[early[afternoon].intent_id] == window_of[late[afternoon].intent_id] == window_id
        await booked(settings, window_id)
        await reconcile(settings, window_id)  # while the window runs: it hears the ledger's bookings
    slots = await fetch(settings.database_url, 'SELECT starts_at, session, window_id FROM "window".slots '
                                               "ORDER BY starts_at")
    assert [(r["starts_at"], r["session"], r["window_id"]) for r in slots] == [
        (datetime(2026, 12, 3, 14, 30, tzinfo=UTC), "morning", window_id),
        (datetime(2026, 12, 3, 20, 0, tzinfo=UTC), "afternoon", window_id)]


async def test_the_afternoon_window_trades_plus_accounts_and_those_who_chose_it(others, bus, settings):
    symbol = new_symbol()
    await set_prices(bus, **{symbol: "20.00"})
    before_the_afternoon = datetime(2026, 12, 1, 19, 0, tzinfo=UTC)  # 14:00 New York
    async with window_at(settings, before_the_afternoon).running() as window:
        await run_schedule(window)  # the 09:30 window of the day, whatever it holds
        basic = await open_funded(bus, settings, "100.00")
        chose = await open_funded(bus, settings, "100.00")
        plus = new_account()
        assert (await bus.request(OpenAccount(account_id=plus, plan=Plan.PLUS))).ok
        assert (await bus.request(SetTradeWindow(account_id=chose, session="afternoon"))).ok
        await eventually(lambda: fetchval(settings.database_url,
                                          'SELECT count(*) = 2 FROM "window".accounts WHERE account_id IN ($1, $2) '
                                          "AND (plan = 'plus' OR session = 'afternoon')", plus, chose))
        intents = {a: intent(a, symbol, Side.BUY, "10.00") for a in (basic, chose, plus)}
        for one in intents.values():
            await submit(bus, settings, one)
        window.clock.set(datetime(2026, 12, 1, 20, 1, tzinfo=UTC))
        closing = await run_schedule(window)
        assert closing is not None and closing.accounts == 2
        rows = await fetch(settings.database_url, 'SELECT account_id, status, reason FROM "window".intents '
                                                  "WHERE intent_id = ANY($1::uuid[])",
                           [i.intent_id for i in intents.values()])
        status = {r["account_id"]: (r["status"], r["reason"]) for r in rows}
        assert status[basic] == ("pending", None)  # waits for the next morning
        assert status[chose][0] == "frozen" or status[chose][0] == "filled"
        assert status[plus][0] == "rejected"  # a plus account with no cash: in the window, funded nothing
        await booked(settings, closing.window_id)
        await reconcile(settings, closing.window_id)
        # the next morning takes the basic account's intent
        window.clock.set(datetime(2026, 12, 2, 14, 31, tzinfo=UTC))
        morning = await run_schedule(window)
        assert morning is not None
        assert await fetchval(settings.database_url, 'SELECT window_id FROM "window".intents WHERE intent_id = $1',
                              intents[basic].intent_id) == morning.window_id
        await booked(settings, morning.window_id)
        await reconcile(settings, morning.window_id)


async def test_a_cancel_after_the_window_started_is_refused_even_before_the_schedule_runs_it(others, bus, settings):
    symbol = new_symbol()
    await set_prices(bus, **{symbol: "20.00"})
    async with window_at(settings, datetime(2026, 12, 7, 14, 0, tzinfo=UTC)).running() as window:  # 09:00 NY
        assert await run_schedule(window) is None  # the schedule has begun; nothing owed yet
        morning, afternoon = await open_funded(bus, settings, "100.00"), await open_funded(bus, settings, "100.00")
        assert (await bus.request(SetTradeWindow(account_id=afternoon, session="afternoon"))).ok
        await eventually(lambda: fetchval(settings.database_url, 'SELECT session = $2 FROM "window".accounts '
                                                                 "WHERE account_id = $1", afternoon, "afternoon"))
        taken, waits = intent(morning, symbol, Side.BUY, "10.00"), intent(afternoon, symbol, Side.BUY, "10.00")
        await submit(bus, settings, taken)
        await submit(bus, settings, waits)
        # 09:30:05: the morning window has started; the schedule's next check has not run it yet
        window.clock.set(datetime(2026, 12, 7, 14, 30, 5, tzinfo=UTC))
        late = intent(morning, symbol, Side.BUY, "10.00")  # sent after the start: the next morning's
        await submit(bus, settings, late)
        reply = await bus.request(CancelIntents(intent_ids=[taken.intent_id, waits.intent_id, late.intent_id]))
        assert reply.ok
        assert sorted(reply.result["cancelled"]) == sorted([str(waits.intent_id), str(late.intent_id)])
        assert reply.result["refused"] == {
            str(taken.intent_id): "its window (morning, 2026-12-07 09:30 New York) has started"}
        closing = await run_schedule(window)  # (it also takes what earlier tests left pending)
        assert closing is not None
        assert await fetchval(settings.database_url, 'SELECT window_id FROM "window".intents WHERE intent_id = $1',
                              taken.intent_id) == closing.window_id
        await booked(settings, closing.window_id)
        await reconcile(settings, closing.window_id)
        # once it has run, what is pending is cancellable again until the next window starts
        again = intent(morning, symbol, Side.BUY, "10.00")
        await submit(bus, settings, again)
        reply = await bus.request(CancelIntents(intent_ids=[again.intent_id]))
        assert reply.ok and reply.result["cancelled"] == [str(again.intent_id)]
