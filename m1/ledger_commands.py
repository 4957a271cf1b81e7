"""``m1 statement``, ``m1 ledger export`` and ``m1 ledger audit``: an account's month, the
whole journal for an accountant, and the books' invariant check."""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path
from typing import Annotated
from zoneinfo import ZoneInfo

import typer
from pydantic import ValidationError
from rich.table import Table

from shared.contracts import AuditLedger, ExportJournal, GetStatement

NEW_YORK = ZoneInfo("America/New_York")  # the ledger's business dates
ledger_app = typer.Typer(no_args_is_help=True, help="The book of record (operator commands).")


def _cli():
    from m1 import cli  # the shared helpers (run, _call, console, print_json) live there

    return cli


def statement(account_id: str,
              month: Annotated[str | None, typer.Option(help="YYYY-MM (default: this month).")] = None,
              as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """An account's month: opening and closing balances, every movement, holdings with cost
    and market value, and settled, unsettled and withdrawable cash."""
    cli = _cli()
    try:
        query = GetStatement(account_id=account_id, month=month or datetime.now(NEW_YORK).strftime("%Y-%m"))
    except ValidationError:
        raise typer.BadParameter(f"not a month (YYYY-MM): {month}") from None
    view = cli.run(cli._call(query))
    if as_json:
        cli.print_json(view)
        return
    console = cli.console
    console.print(f"[bold]{view['account_id']}[/bold] statement for {view['month']}")
    console.print(f"opening: cash ${view['opening']['cash']}  " + _positions(view["opening"]["positions"]))
    moves = Table(title="movements")
    for column in ("date", "kind", "reference", "cash", "shares"):
        moves.add_column(column, justify="right" if column == "cash" else "left")
    for m in view["movements"]:
        moves.add_row(m["date"], m["kind"], m["reference"], m["cash"], _positions(m["shares"]))
    console.print(moves)
    console.print(f"closing: cash ${view['closing']['cash']}  " + _positions(view["closing"]["positions"]))
    holdings = Table(title="holdings")
    for column in ("symbol", "quantity", "cost", "price", "market value"):
        holdings.add_column(column, justify="left" if column == "symbol" else "right")
    for h in view["holdings"]:
        holdings.add_row(h["symbol"], h["quantity"], _dollars(h["cost"]), h["price"] or "n/a",
                         _dollars(h["market_value"]))
    console.print(holdings)
    cash = view["cash"]
    spoken_for = "".join(f", {label} ${cash[key]}" for key, label in (("held_for_trades", "held for trades"),
                                                                      ("waiting_withdrawals", "waiting withdrawals"))
                         if cash.get(key) not in (None, "0.00"))
    console.print(f"cash ${cash['cash']}: settled ${cash['settled']}, unsettled ${cash['unsettled']}, "
                  f"deposits on hold ${cash['on_hold']}{spoken_for}, withdrawable ${cash['withdrawable']}")
    console.print(f"market value ${cash['market_value']}; total ${cash['total']}")


def _positions(positions: dict) -> str:
    return ", ".join(f"{q} {s}" for s, q in sorted(positions.items())) or "no positions"


def _dollars(value: str | None) -> str:
    return f"${value}" if value is not None else "n/a"


@ledger_app.command("export")
def export(fmt: Annotated[str, typer.Option("--format", help="Only beancount for now.")] = "beancount",
           output: Annotated[Path | None, typer.Option("--output", "-o", help="File (default: stdout).")] = None
           ) -> None:
    """The whole journal (customer and firm books) as a beancount file, ending with a balance
    assertion for every account; check it with ``bean-check FILE``."""
    cli = _cli()
    try:
        query = ExportJournal(format=fmt)
    except ValidationError:
        raise typer.BadParameter(f"unsupported format {fmt!r} (supported: beancount)") from None
    result = cli.run(cli._call(query))
    if output is None:
        sys.stdout.write(result["text"])
    else:
        output.write_text(result["text"])
        cli.console.print(f"{result['entries']} entries written to {output}")


@ledger_app.command("audit")
def audit(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Recompute every balance from the journal and reconcile the books; exit 1 with the
    differences if anything is off."""
    cli = _cli()
    report = cli.run(cli._call(AuditLedger()))
    if as_json:
        cli.print_json(report)
    else:
        kinds = ", ".join(f"{k} {n}" for k, n in sorted(report["kinds"].items())) or "none"
        cli.console.print(f"{report['entries']} entries ({kinds}), {report['postings']} postings, "
                          f"{report['accounts']} accounts")
        for difference in report["differences"]:
            cli.console.print(f"[red]difference:[/red] {difference}")
        cli.console.print("[green]the books are clean[/green]" if report["ok"]
                          else f"[red]{len(report['differences'])} differences[/red]")
    if not report["ok"]:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.add_typer(ledger_app, name="ledger")
    app.command("statement")(statement)
