"""The demo: one customer's first deposit and an order, end to end through the running services.

Opens an account, sets a nested pie, deposits $1,000.00 as the bank would, waits for the
pie service's buy intents, closes the trade window as an operator would, waits for the
fills to be booked, replays the same deposit (nothing changes); then, with auto-invest off,
orders 1 share of VTI paid by a deposit made with the order, trades it in the next window,
audits the books, and prints the portfolio and the customer's notifications.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from decimal import Decimal

from rich.console import Console

from m1.client import Client, ServiceError
from shared.contracts import (
    AuditLedger,
    CloseWindow,
    GetFeed,
    GetOrder,
    GetPortfolio,
    OpenAccount,
    PieSpec,
    PlaceOrder,
    SetPie,
    SetSettings,
    Side,
)
from shared.settings import Settings

DEMO_PIE = PieSpec.model_validate({
    "name": "Global core",
    "slices": [
        {"target": 70, "pie": {"name": "Stocks", "slices": [{"symbol": "VTI", "target": 70},
                                                             {"symbol": "VXUS", "target": 30}]}},
        {"target": 30, "pie": {"name": "Bonds", "slices": [{"symbol": "BND", "target": 80},
                                                           {"symbol": "BNDX", "target": 20}]}},
    ],
})
DEPOSIT = Decimal("1000.00")
ORDER_DEPOSIT = Decimal("350.00")  # 1 share of VTI at its last price plus the 5% margin


async def wait_for(check, what: str, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := await check():
            return result
        await asyncio.sleep(0.2)
    raise TimeoutError(f"timed out waiting for {what}")


async def run_demo(settings: Settings, console: Console) -> bool:
    from m1.cli import portfolio_table

    account = f"demo-{uuid.uuid4().hex[:6]}"
    try:
        async with Client(settings) as client:
            await client.call(OpenAccount(account_id=account))
            console.print(f"1. opened account [bold]{account}[/bold] (individual, basic)")
            # The pie service learns of the account from the ledger's event: wait until it has.
            await wait_for(lambda: _set_pie(client, account), "the pie service to know the account")
            console.print("2. set pie 'Global core': Stocks 70% (VTI 70 / VXUS 30), Bonds 30% (BND 80 / BNDX 20)")
            event = await client.deposit(account, DEPOSIT)
            console.print(f"3. bank published funding.deposit.received {event.deposit_id} for ${DEPOSIT}")

            async def pending():
                view = await client.call(GetPortfolio(account_id=account))
                return view if Decimal(view["pending_buys"]) > 0 else None

            view = await wait_for(pending, "the pie service's buy intents")
            console.print(f"4. pie service queued ${view['pending_buys']} of buys for the next window")
            # The intents travel from the pie to the window as an event: close once it has them.
            closing = await wait_for(lambda: _close_with_intents(client), "the window to receive the intents")
            orders = ", ".join(f"{o['side']} {o['symbol']} ${o['notional']}" for o in closing["orders"])
            console.print(f"5. operator closed window {str(closing['window_id'])[:8]}: net orders {orders}")

            async def invested():
                view = await client.call(GetPortfolio(account_id=account))
                return view if Decimal(view["invested"]) > 0 and Decimal(view["pending_buys"]) == 0 else None

            view = await wait_for(invested, "the fills to be booked")
            console.print("6. fills allocated, booked in the ledger, portfolio updated")
            await client.publish_event(event, str(event.deposit_id))
            await asyncio.sleep(1.0)
            again = await client.call(GetPortfolio(account_id=account))
            same = again["cash"] == view["cash"] and again["total"] == view["total"]
            console.print(f"7. bank re-sent the same deposit: {'no change' if same else '[red]CHANGED[/red]'}")
            executed = await _order_one_share(client, console, account)
            audit = await client.call(AuditLedger())
            console.print(f"11. ledger audit: {audit['entries']} entries, "
                          + ("every balance reconciles" if audit["ok"] else f"[red]{audit['differences']}[/red]"))
            again = await client.call(GetPortfolio(account_id=account))
            console.print(portfolio_table(again))
            feed = await wait_for(lambda: _feed_with(client, account, 4), "the notifications")
            console.print("notifications:")
            for entry in feed:
                console.print(f"  - {entry['message']}")
            ok = same and Decimal(again["invested"]) > 0 and executed and audit["ok"]
            console.print("[green]demo finished: deposit invested, replay ignored, order executed, books "
                          "reconcile[/green]" if ok
                          else "[red]demo finished with unexpected figures[/red]")
            return ok
    except (ServiceError, TimeoutError) as exc:
        console.print(f"[red]demo failed:[/red] {exc}")
        return False


async def _order_one_share(client: Client, console: Console, account: str) -> bool:
    """The holder turns auto-invest off and orders 1 share of VTI with a deposit to pay for
    it; the order waits for the deposit, goes into the next window ahead of automated trades
    and ends executed."""
    await client.call(SetSettings(account_id=account, auto_invest=False))
    deposit_id = uuid.uuid4()
    placed = await client.call(PlaceOrder(account_id=account, symbol="VTI", side=Side.BUY, quantity=Decimal("1"),
                                          deposit_id=deposit_id, deposit_amount=ORDER_DEPOSIT))
    order_id = placed["order"]["order_id"]
    await client.deposit(account, ORDER_DEPOSIT, deposit_id)
    console.print(f"8. auto-invest off; order {order_id[:8]}: buy 1 share of VTI, paid by a ${ORDER_DEPOSIT} "
                  "deposit made with it")

    async def funded():
        view = (await client.call(GetOrder(order_id=uuid.UUID(order_id))))["order"]
        return view if view["waiting_for"] is None else None

    await wait_for(funded, "the order's deposit to be booked")
    closing = await wait_for(lambda: _close_with_intents(client), "the window to receive the order")
    console.print(f"9. operator closed window {str(closing['window_id'])[:8]}")

    async def final():
        view = (await client.call(GetOrder(order_id=uuid.UUID(order_id))))["order"]
        return view if view.get("final") else None

    view = await wait_for(final, "the order's outcome")
    price = Decimal(view["price"]) if view.get("price") else Decimal(0)
    cents = price.quantize(Decimal("0.01"))
    console.print(f"10. order {view['status']}: {view.get('filled_quantity')} share at "
                  f"${cents if cents == price else price.normalize()}")
    return view["status"] == "executed"


async def _close_with_intents(client: Client):
    closing = await client.call(CloseWindow())
    return closing if closing["intents"] else None


async def _feed_with(client: Client, account: str, n: int):
    feed = await client.call(GetFeed(account_id=account))
    return feed["entries"] if len(feed["entries"]) >= n else None


async def _set_pie(client: Client, account: str) -> bool:
    reply = await client.request(SetPie(account_id=account, pie=DEMO_PIE))
    if not reply.ok and "unknown account" not in (reply.reason or ""):
        raise ServiceError(reply)
    return reply.ok
