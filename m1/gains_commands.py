"""``m1 gains``, ``m1 dividend`` and ``m1 day-run``: an account's realised gains for a tax
year (the shape of a 1099-B summary), announcing a dividend (operator, market simulator),
and running the ledger's daily job for a date (dividends, interest, fees)."""

from __future__ import annotations

import csv
import sys
from datetime import date
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.table import Table

from m1.client import explain
from shared.contracts import AnnounceDividend, GetGains, RunLedgerDay

CSV_COLUMNS = ("sale_id", "symbol", "quantity", "acquired", "sold", "proceeds", "cost", "gain", "term", "wash_sale",
               "basis_known")


def _cli():
    from m1 import cli  # the shared helpers (run, _call, console, print_json) live there

    return cli


def gains_table(report: dict) -> Table:
    table = Table(title=f"realised gains {report['account_id']} {report['year']}")
    for column in ("sold", "symbol", "quantity", "acquired", "proceeds", "cost", "gain", "term", "wash sale"):
        table.add_column(column)
    for s in report["sales"]:
        table.add_row(s["sold"], s["symbol"], s["quantity"], s["acquired"] or "unknown", s["proceeds"],
                      s["cost"] if s["basis_known"] else "unknown", s["gain"], s["term"],
                      "W" if s["wash_sale"] else "")
    return table


def totals_table(report: dict) -> Table:
    table = Table(title="totals")
    for column in ("", "proceeds", "cost", "gain", "wash sales"):
        table.add_column(column)
    for label, key in (("short-term", "short_term"), ("long-term", "long_term"), ("total", "total")):
        t = report[key]
        table.add_row(label, t["proceeds"], t["cost"], t["gain"], str(t["wash_sales"]))
    return table


def write_csv(report: dict, out=None) -> None:
    """One row per lot closed by a sale, 1099-B style columns."""
    writer = csv.writer(out or sys.stdout, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for s in report["sales"]:
        writer.writerow([s[c] if s[c] is not None else "" for c in CSV_COLUMNS])


def gains(account_id: str, year: Annotated[int, typer.Option("--year", help="tax year (sales booked that year)")],
          as_json: Annotated[bool, typer.Option("--json")] = False,
          as_csv: Annotated[bool, typer.Option("--csv")] = False) -> None:
    """Realised gains of a tax year: per sale (lot closed) and in total, short and long term."""
    cli = _cli()
    if as_json and as_csv:
        raise typer.BadParameter("choose one of --json and --csv")
    try:
        query = GetGains(account_id=account_id, year=year)
    except ValidationError as exc:
        raise typer.BadParameter(explain(exc)) from None
    report = cli.run(cli._call(query))
    if as_json:
        cli.print_json(report)
    elif as_csv:
        write_csv(report)
    else:
        cli.console.print(gains_table(report))
        cli.console.print(totals_table(report))


def dividend(symbol: str, amount_per_share: Annotated[str, typer.Argument(help="dollars per share")],
             ex_date: Annotated[str, typer.Option("--ex-date", help="YYYY-MM-DD: holders before this day are paid")],
             pay_date: Annotated[str, typer.Option("--pay-date", help="YYYY-MM-DD: the day cash is credited")]
             ) -> None:
    """Announce a dividend (market simulator): the ledger pays it on the pay date."""
    cli = _cli()
    try:
        command = AnnounceDividend(symbol=symbol.upper(), amount_per_share=amount_per_share,
                                   ex_date=date.fromisoformat(ex_date), pay_date=date.fromisoformat(pay_date))
    except (ValidationError, ValueError) as exc:
        raise typer.BadParameter(explain(exc)) from None
    result = cli.run(cli._call(command))
    cli.console.print(f"dividend {result['symbol']} ${result['amount_per_share']} a share, ex-date "
                      f"{result['ex_date']}, paid {result['pay_date']}")


def day_run(day: Annotated[str, typer.Argument(help="YYYY-MM-DD (New York)")]) -> None:
    """Run the ledger's daily job for a day now (normally it runs by itself after each day)."""
    cli = _cli()
    try:
        command = RunLedgerDay(day=date.fromisoformat(day))
    except (ValidationError, ValueError) as exc:
        raise typer.BadParameter(explain(exc)) from None
    result = cli.run(cli._call(command))
    cli.console.print(f"day {result['day']}: dividends paid {', '.join(result['dividends_paid']) or 'none'} "
                      f"({result['dividend_accounts']} accounts); interest accrued for "
                      f"{result['interest_accrued_accounts']}, paid to {result['interest_paid_accounts']}; "
                      f"regulatory fees charged to {result['regulatory_fee_accounts']}; "
                      f"platform fee charged to {result['platform_fee_accounts']}")


def register(app: typer.Typer) -> None:
    app.command("gains")(gains)
    app.command("dividend")(dividend)
    app.command("day-run")(day_run)
