"""``m1 order buy|sell|cancel|show`` and ``m1 orders``: customer orders of one slice, ahead of
automated trades in the next window."""

from __future__ import annotations

import asyncio
import time
import uuid
from decimal import Decimal
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.table import Table

from m1.client import Client, explain
from shared.contracts import CancelOrder, GetOrder, GetOrders, PlaceOrder, Side
from shared.settings import get_settings

order_app = typer.Typer(no_args_is_help=True, help="Customer orders: buy or sell one slice of the pie.")

FINAL = ("cancelled", "executed", "partially_executed", "rejected")


def is_final(order: dict) -> bool:
    """The order reached its one final state (a partially executed order is open while its
    rest is carried; an order state without the flag is judged by its status)."""
    if order.get("final") is not None:
        return bool(order["final"])
    return order["status"] in FINAL


def _cli():
    from m1 import cli  # the shared helpers (run, _call, console, print_json) live there

    return cli


def describe(order: dict) -> str:
    what = f"${order['amount']}" if order["amount"] is not None else f"{order['quantity']} shares"
    return f"{order['side']} {what} of {order['symbol']}"


def status_line(order: dict) -> str:
    """``pending``, ``pending (waits for deposit ...)``, ``executed: 0.39808 at 251.2``,
    ``partially executed, rest $40.00 carried: ...``."""
    text = order["status"].replace("_", " ")
    if order["status"] == "partially_executed" and not is_final(order):
        rest = f"${order['rest_amount']}" if order.get("rest_amount") is not None else \
            f"{order.get('rest_quantity')} shares"
        text += f", rest {rest} carried"
    if order.get("waiting_for"):
        text += f" (waits for {order['waiting_for']})"
    if order.get("cancel_requested"):
        text += " (cancel requested)"
    if order["status"] in ("executed", "partially_executed"):
        text += f": {order['filled_quantity']} for ${order['filled_amount']} at {order['price']}"
    if order.get("reason") and order["status"] not in ("pending", "executed"):
        text += f" - {order['reason']}"
    return text


def _amount_or_shares(amount: str | None, shares: str | None) -> dict:
    if (amount is None) == (shares is None):
        raise typer.BadParameter("give exactly one of --amount or --shares")
    return {"amount": amount} if amount is not None else {"quantity": shares}


def _place(account_id: str, symbol: str, side: Side, amount: str | None, shares: str | None,
           deposit: str | None = None) -> None:
    cli = _cli()
    fields = _amount_or_shares(amount, shares)
    deposit_id = uuid.uuid4() if deposit is not None else None
    try:
        command = PlaceOrder(account_id=account_id, symbol=symbol.upper(), side=side, deposit_id=deposit_id,
                             deposit_amount=deposit, **fields)
    except ValidationError as exc:
        raise typer.BadParameter(explain(exc)) from None

    async def go():
        async with Client(get_settings()) as client:
            result = await client.call(command)
            if deposit_id is not None:  # the order is in: now the deposit, exactly as the bank sends it
                await client.deposit(account_id, Decimal(deposit), deposit_id)
            return result

    order = cli.run(go())["order"]
    cli.console.print(f"order {order['order_id']}: {describe(order)} - {status_line(order)}")
    if deposit_id is not None:
        cli.console.print(f"deposit {deposit_id} of ${command.deposit_amount} published for {account_id}")


def buy(account_id: str, symbol: str,
        amount: Annotated[str | None, typer.Option("--amount", help="dollars, e.g. 100.00")] = None,
        shares: Annotated[str | None, typer.Option("--shares", help="shares, up to 5 decimals")] = None,
        deposit: Annotated[str | None, typer.Option("--deposit", help="deposit this much with the order; "
                                                    "the order waits for it")] = None) -> None:
    """Buy one slice of the pie, by amount or shares, in the next window (ahead of automated trades)."""
    _place(account_id, symbol, Side.BUY, amount, shares, deposit)


def sell(account_id: str, symbol: str,
         amount: Annotated[str | None, typer.Option("--amount", help="dollars, e.g. 100.00")] = None,
         shares: Annotated[str | None, typer.Option("--shares", help="shares, up to 5 decimals")] = None) -> None:
    """Sell one slice of the pie, by amount or shares (not more than held), in the next window."""
    _place(account_id, symbol, Side.SELL, amount, shares)


def _order_id(text: str) -> uuid.UUID:
    try:
        return uuid.UUID(text)
    except ValueError:
        raise typer.BadParameter(f"not an order id: {text}") from None


def cancel(order_id: str) -> None:
    """Cancel an order until its window starts; waits for the window's answer."""
    cli = _cli()
    oid = _order_id(order_id)

    async def go():
        settings = get_settings()
        async with Client(settings) as client:
            order = (await client.call(CancelOrder(order_id=oid)))["order"]
            deadline = time.monotonic() + settings.request_timeout
            while order["cancel_requested"] and not is_final(order) and time.monotonic() < deadline:
                await asyncio.sleep(0.2)
                order = (await client.call(GetOrder(order_id=oid)))["order"]
            return order

    order = cli.run(go())
    cli.console.print(f"order {order['order_id']}: {describe(order)} - {status_line(order)}")
    # a partly executed order whose rest was cancelled ends partially executed
    rest_cancelled = order["status"] == "partially_executed" and "cancelled by the holder" in (order["reason"] or "")
    if not is_final(order) or (order["status"] != "cancelled" and not rest_cancelled):
        raise typer.Exit(1)


def show(order_id: str, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """One order's state."""
    cli = _cli()
    order = cli.run(cli._call(GetOrder(order_id=_order_id(order_id))))["order"]
    if as_json:
        cli.print_json(order)
    else:
        cli.console.print(f"order {order['order_id']}: {describe(order)} - {status_line(order)}")


def orders(account_id: str, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """The account's orders, oldest first, with their state."""
    cli = _cli()
    result = cli.run(cli._call(GetOrders(account_id=account_id)))
    if as_json:
        cli.print_json(result["orders"])
        return
    if not result["orders"]:
        cli.console.print("no orders")
        return
    table = Table(title=f"{account_id}: orders")
    for column in ("order", "placed", "order of", "open/final", "state"):
        table.add_column(column)
    for o in result["orders"]:
        table.add_row(o["order_id"], o["placed_at"][:19], describe(o), "final" if is_final(o) else "open",
                      status_line(o))
    cli.console.print(table)


def register(app: typer.Typer) -> None:
    order_app.command("buy")(buy)
    order_app.command("sell")(sell)
    order_app.command("cancel")(cancel)
    order_app.command("show")(show)
    app.add_typer(order_app, name="order")
    app.command("orders")(orders)
