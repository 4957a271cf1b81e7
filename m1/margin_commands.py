"""``m1 margin borrow|repay|status`` for the holder, and ``m1 margin requirement|interest|
check-calls`` for the operator: margin loans, the account's margin figures and calls."""

from __future__ import annotations

import uuid
from datetime import date
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.table import Table

from m1.client import explain
from shared.contracts import (
    AccrueInterest,
    BorrowMargin,
    CheckCalls,
    GetMarginStatus,
    RepayLoan,
    SetSecurityRequirement,
)

margin_app = typer.Typer(no_args_is_help=True, help="Margin: borrow against the portfolio.")


def _cli():
    from m1 import cli  # the shared helpers (run, _call, console, print_json) live there

    return cli


def _command(build):
    try:
        return build()
    except ValidationError as exc:
        raise typer.BadParameter(explain(exc)) from None


def borrow(account_id: str, amount: str) -> None:
    """Borrow AMOUNT into cash (needs an eligible account, $2,000 invested, a diversified
    portfolio and enough borrowing power)."""
    cli = _cli()
    result = cli.run(cli._call(_command(lambda: BorrowMargin(account_id=account_id, amount=amount))))
    cli.console.print(f"loan of ${result['amount']} requested ({result['loan_id']}); "
                      f"borrowing power left: ${result['borrowing_power']}")


def repay(account_id: str, amount: str) -> None:
    """Repay AMOUNT of the margin loan from cash."""
    cli = _cli()
    result = cli.run(cli._call(_command(lambda: RepayLoan(account_id=account_id, repayment_id=uuid.uuid4(),
                                                          amount=amount))))
    cli.console.print(f"repaid ${-cli.money(result['delta'])}; loan now ${result['loan']}, cash ${result['cash']}")


def status(account_id: str, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Market value, cash, loan, equity, maintenance requirement, borrowing power, interest
    and any margin call."""
    cli = _cli()
    view = cli.run(cli._call(_command(lambda: GetMarginStatus(account_id=account_id))))
    if as_json:
        cli.print_json(view)
        return
    table = Table(title=f"margin: {account_id}", show_header=False)
    for label, key in (("market value", "market_value"), ("cash", "cash"), ("loan", "loan"), ("equity", "equity"),
                       ("maintenance requirement", "requirement"), ("borrowing power", "borrowing_power"),
                       ("interest accrued", "interest_accrued")):
        table.add_row(label, f"${view[key]}")
    table.add_row("interest rate", f"{cli.money(view['interest_rate']) * 100:.2f}% a year")
    table.add_row("eligible", "yes" if view["eligible"] else f"no: {view['reason']}")
    call = view.get("call")
    if call:
        text = f"{call['status']}: ${call['amount_due']} due by {call['deadline']}"
        if call.get("liquidation_amount"):
            text += f"; liquidating ${call['liquidation_amount']}"
        table.add_row("margin call", text)
    else:
        table.add_row("margin call", "none")
    cli.console.print(table)


def requirement(symbol: str,
                initial: Annotated[str | None, typer.Option(help="share not borrowable, e.g. 0.75")] = None,
                maintenance: Annotated[str | None, typer.Option(help="maintenance rate, e.g. 0.75")] = None) -> None:
    """Operator: a security's own margin requirements (left out: the house default)."""
    cli = _cli()
    result = cli.run(cli._call(_command(lambda: SetSecurityRequirement(symbol=symbol.upper(), initial=initial,
                                                                       maintenance=maintenance))))
    cli.console.print(f"{result['symbol']}: initial {result['initial'] or 'house'}, "
                      f"maintenance {result['maintenance'] or 'house'}")


def interest(day: str) -> None:
    """Operator: run the interest job of DAY (YYYY-MM-DD; the month's last day also charges)."""
    cli = _cli()
    try:
        parsed = date.fromisoformat(day)
    except ValueError:
        raise typer.BadParameter(f"not a date (YYYY-MM-DD): {day}") from None
    result = cli.run(cli._call(AccrueInterest(day=parsed)))
    cli.console.print(f"{result['day']}: accrued on {result['accrued_accounts']} loans; charged "
                      f"${result['charged']} to {result['charged_accounts']} accounts")


def check_calls() -> None:
    """Operator: liquidate the margin calls past their deadline now."""
    cli = _cli()
    result = cli.run(cli._call(CheckCalls()))
    cli.console.print("liquidated: " + (", ".join(result["liquidated"]) or "none"))


def register(app: typer.Typer) -> None:
    app.add_typer(margin_app, name="margin")
    for fn in (borrow, repay, status, requirement, interest):
        margin_app.command()(fn)
    margin_app.command("check-calls")(check_calls)
