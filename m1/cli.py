"""The m1 command line: run the system, act as the bank or an operator, read results.

Every command talks to the running services over RabbitMQ (request/reply), exactly as any
other client would; none reads a service's tables.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from m1.client import Client, ServiceError, explain
from shared.contracts import (
    AccountKind,
    CloseWindow,
    GetFeed,
    GetPortfolio,
    OpenAccount,
    PieSpec,
    Plan,
    SetPie,
    SetPrices,
    SetSecurityActive,
)
from shared.settings import get_settings

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__.splitlines()[0])
account_app = typer.Typer(no_args_is_help=True, help="Customer accounts.")
pie_app = typer.Typer(no_args_is_help=True, help="Pies: an account's target portfolio.")
window_app = typer.Typer(no_args_is_help=True, help="Trade windows (operator commands).")
prices_app = typer.Typer(no_args_is_help=True, help="The market simulator's prices.")
app.add_typer(account_app, name="account")
app.add_typer(pie_app, name="pie")
app.add_typer(window_app, name="window")
app.add_typer(prices_app, name="prices")
console = Console()


def run(coro) -> Any:
    """Run one client coroutine; turn refusals and timeouts into a clear message and exit 1."""
    try:
        return asyncio.run(coro)
    except ServiceError as exc:
        console.print(f"[red]refused:[/red] {exc.reply.reason}")
        for err in exc.reply.errors:
            console.print(f"  - {err}")
        raise typer.Exit(1) from None
    except (TimeoutError, ConnectionError, OSError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None


async def _call(command):
    async with Client(get_settings()) as client:
        return await client.call(command)


def money(text: str) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise typer.BadParameter(f"not an amount: {text}") from None
    return value


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


# ---------------------------------------------------------------- running the system


@app.command()
def up(
    demo: Annotated[bool, typer.Option(help="Run the demo once every service is healthy.")] = False,
    logs: Annotated[Path | None, typer.Option(help="Write each service's JSON log to DIR/<service>.log "
                                                    "(default with --demo: var/log).")] = None,
    only: Annotated[str | None, typer.Option(help="Comma-separated services to run (default: all).")] = None,
) -> None:
    """Migrate, then run every service as its own process in the foreground; Ctrl-C stops all."""
    from m1.runner import Supervisor, migrate_all
    from shared.topology import SERVICES

    settings = get_settings()
    names = only.split(",") if only else list(SERVICES)
    if unknown := set(names) - set(SERVICES):
        raise typer.BadParameter(f"unknown services: {', '.join(sorted(unknown))}")
    log_dir = logs or (Path("var/log") if demo else None)
    console.print(f"migrating {settings.database_url} and declaring the topology on the broker ...")
    asyncio.run(migrate_all(settings))
    supervisor = Supervisor(settings, names, log_dir)
    stopping = False

    def on_signal(signum, frame):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    supervisor.start()
    try:
        if failed := supervisor.wait_healthy():
            console.print(f"[red]services not healthy:[/red] {', '.join(failed)}")
            raise typer.Exit(1)
        console.print("services healthy: " + ", ".join(f"{n} :{supervisor.port(n)}" for n in names))
        if log_dir:
            console.print(f"service logs: {log_dir}/<service>.log (one JSON object per line)")
        if demo:
            from m1.demo import run_demo

            ok = asyncio.run(run_demo(settings, console))
            if not ok:
                raise typer.Exit(1)
        console.print("running; press Ctrl-C to stop")
        while not stopping:
            if exited := supervisor.exited():
                console.print(f"[red]service exited:[/red] {exited}")
                raise typer.Exit(1)
            time.sleep(0.5)
    finally:
        codes = supervisor.stop()
        console.print("stopped: " + ", ".join(f"{n}={c}" for n, c in codes.items()))


@app.command()
def migrate() -> None:
    """Apply every service's migrations and declare the broker topology, then exit."""
    from m1.runner import migrate_all

    applied = asyncio.run(migrate_all(get_settings()))
    for name, files in applied.items():
        console.print(f"{name}: {', '.join(files) if files else 'up to date'}")


@app.command()
def asyncapi(output: Annotated[Path | None, typer.Option(help="write it here (default: stdout)")] = None) -> None:
    """The AsyncAPI 3.0 document of every message the services handle, generated from the code."""
    from importlib.metadata import version

    from m1.asyncapi import render

    text = render(version("m1-backoffice"))
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text)
        console.print(f"wrote {output}")


@app.command()
def demo() -> None:
    """Drive a small scenario through the running services and print the outcome."""
    from m1.demo import run_demo

    if not asyncio.run(run_demo(get_settings(), console)):
        raise typer.Exit(1)


# ---------------------------------------------------------------- accounts and money


@account_app.command("open")
def account_open(
    account_id: str,
    kind: Annotated[AccountKind, typer.Option(help="Account kind.")] = AccountKind.INDIVIDUAL,
    plan: Annotated[Plan, typer.Option(help="Plan.")] = Plan.BASIC,
) -> None:
    """Open a customer account in the ledger."""
    try:
        command = OpenAccount(account_id=account_id, kind=kind, plan=plan)
    except ValidationError as exc:
        raise typer.BadParameter(explain(exc)) from None
    result = run(_call(command))
    console.print(f"account {result['account_id']} open ({result['kind']}, {result['plan']})")


@app.command()
def deposit(account_id: str, amount: str) -> None:
    """Publish funding.deposit.received, exactly as the bank would."""

    async def go():
        async with Client(get_settings()) as client:
            return await client.deposit(account_id, money(amount))

    try:
        event = run(go())
    except ValidationError as exc:
        raise typer.BadParameter(explain(exc)) from None
    console.print(f"deposit {event.deposit_id} of ${event.amount} published for {account_id}")


@app.command()
def withdraw(account_id: str, amount: str) -> None:
    """Publish funding.withdrawal.requested, exactly as the bank would."""

    async def go():
        async with Client(get_settings()) as client:
            return await client.withdraw(account_id, money(amount))

    try:
        event = run(go())
    except ValidationError as exc:
        raise typer.BadParameter(explain(exc)) from None
    console.print(f"withdrawal {event.withdrawal_id} of ${event.amount} requested for {account_id}")


# ---------------------------------------------------------------- pies and portfolio


def load_pie(path: Path) -> PieSpec:
    text = path.read_text()
    data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    return PieSpec.model_validate(data)


@pie_app.command("set")
def pie_set(account_id: str, file: Annotated[Path, typer.Argument(exists=True, dir_okay=False)]) -> None:
    """Set an account's pie from a YAML or JSON tree (see examples/pies/)."""
    try:
        command = SetPie(account_id=account_id, pie=load_pie(file))
    except (ValidationError, yaml.YAMLError, json.JSONDecodeError) as exc:
        console.print(f"[red]invalid pie file:[/red] {explain(exc)}")
        raise typer.Exit(1) from None
    run(_call(command))
    console.print(f"pie '{command.pie.name}' set for {account_id}")


PORTFOLIO_COLUMNS = ("slice", "target %", "actual %", "drift", "value", "quantity")


def portfolio_rows(view: dict) -> tuple[list[tuple[str, ...]], list[tuple[str, ...]]]:
    """The portfolio as table rows: one per slice through the tree, then the shares held
    outside the pie (removed slices being sold, delisted ones kept), then cash and total."""
    slices = []
    for s in view["slices"]:
        name = "  " * s["depth"] + s["path"].rsplit("/", 1)[-1]
        drift = Decimal(s["actual_pct"]) - Decimal(s["target_pct"])  # percentage points within the parent pie
        slices.append((name, f"{Decimal(s['target_pct']):.0f}", f"{Decimal(s['actual_pct']):.2f}", f"{drift:+.2f}",
                       f"${s['value']}", s["quantity"] or ""))
    for h in view.get("outside", []):
        state = f"delisted: {h['delisted']}" if h["delisted"] else "removed from the pie"
        slices.append((f"{h['path']} ({state})", "", "", "", f"${h['value']}", h["quantity"]))
    totals = [("cash", "", "", "", f"${view['cash']}", "")]
    if Decimal(view["pending_buys"]):
        totals.append(("  of which pending buys", "", "", "", f"${view['pending_buys']}", ""))
    totals.append(("total", "", "", "", f"${view['total']}", ""))
    return slices, totals


def portfolio_table(view: dict) -> Table:
    table = Table(title=f"{view['account_id']}: {view.get('pie_name') or 'no pie'}")
    for col in PORTFOLIO_COLUMNS:
        table.add_column(col, justify="left" if col == "slice" else "right")
    slices, totals = portfolio_rows(view)
    for row in slices:
        table.add_row(*row)
    table.add_section()
    for row in totals:
        table.add_row(*row)
    return table


@app.command()
def portfolio(account_id: str, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Per slice through the nested tree: target %, actual %, drift (points), value, quantity;
    then cash and total."""
    view = run(_call(GetPortfolio(account_id=account_id)))
    if as_json:
        print_json(view)
    else:
        console.print(portfolio_table(view))
        if view.get("needs_adjustment"):
            console.print(f"[yellow]needs adjustment:[/yellow] {', '.join(view['inactive'])} delisted; "
                          "automated trades leave it out until the pie replaces it", highlight=False)


@app.command()
def notifications(account_id: str, as_json: Annotated[bool, typer.Option("--json")] = False,
                  since: Annotated[str | None, typer.Option(help="ISO time, or an age: 30m, 2h, 1d.")] = None) -> None:
    """The account's notification feed, oldest first."""
    feed = run(_call(GetFeed(account_id=account_id, since=notification_commands.parse_since(since))))
    if as_json:
        print_json(feed["entries"])
        return
    for entry in feed["entries"]:
        console.print(f"{entry['created_at'][:19]}  [bold]{entry['kind']}[/bold]  {entry['message']}")
    if not feed["entries"]:
        console.print("no notifications")


# ---------------------------------------------------------------- operators


@window_app.command("close")
def window_close() -> None:
    """Close the open trade window now: net, execute, allocate."""
    result = run(_call(CloseWindow()))
    if not result.get("window_id"):
        console.print("no pending intents: nothing to trade")
        return
    console.print(f"window {result['window_id']} closing: {result['intents']} intents from "
                  f"{result['accounts']} accounts")
    for order in result["orders"]:
        console.print(f"  net {order['side']} {order['symbol']} ${order['notional']}")


@prices_app.command("set")
def prices_set(pairs: Annotated[list[str], typer.Argument(help="SYMBOL=PRICE ...")]) -> None:
    """Set the simulator's current prices, e.g. ``m1 prices set VTI=251.20 BND=72.10``."""
    try:
        prices = {k.strip().upper(): v.strip() for k, _, v in (p.partition("=") for p in pairs)}
        command = SetPrices(prices=prices)
    except ValidationError as exc:
        raise typer.BadParameter(explain(exc)) from None
    result = run(_call(command))
    console.print("prices: " + ", ".join(f"{s}={p}" for s, p in sorted(result["prices"].items())))


@prices_app.command("delist")
def prices_delist(symbol: str, reason: Annotated[str, typer.Option(help="why, kept with the event")] = "delisted"
                  ) -> None:
    """Delist a security: the venue refuses its orders, pies holding it need adjustment."""
    result = run(_call(SetSecurityActive(symbol=symbol.upper(), active=False, reason=reason)))
    console.print(f"{result['symbol']} delisted ({result['reason']}); last price {result['price']}")


@prices_app.command("relist")
def prices_relist(symbol: str) -> None:
    """List a delisted security again: it trades and its price is published again."""
    result = run(_call(SetSecurityActive(symbol=symbol.upper(), active=True)))
    console.print(f"{result['symbol']} listed at {result['price']}")


from m1 import window_commands  # noqa: E402  (needs window_app above)

window_commands.register(window_app)
from m1 import notification_commands  # noqa: E402

notification_commands.register(app)
from m1 import pie_commands  # noqa: E402

pie_commands.register(app, pie_app)
from m1 import order_commands  # noqa: E402

order_commands.register(app)
from m1 import ledger_commands  # noqa: E402

ledger_commands.register(app)
from m1 import gains_commands  # noqa: E402

gains_commands.register(app)


from m1 import margin_commands  # noqa: E402

margin_commands.register(app)
from m1 import dead_letter_commands  # noqa: E402

dead_letter_commands.register(app)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
