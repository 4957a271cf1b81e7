"""Pie commands: ``m1 pie show|models|apply``, ``m1 settings`` and ``m1 rebalance`` (``m1 pie
set`` and ``m1 portfolio`` live in m1/cli.py)."""

from __future__ import annotations

import uuid
from decimal import Decimal
from enum import StrEnum
from typing import Annotated

import typer
import yaml
from pydantic import ValidationError
from rich.table import Table

from m1.client import explain
from shared.contracts import (
    ApplyModel,
    CancelIntents,
    CancelRebalance,
    GetPortfolio,
    ListModels,
    Rebalance,
    SetSettings,
)


class Dividends(StrEnum):
    CASH = "cash"
    REINVEST = "reinvest"


def _cli():
    from m1 import cli  # the shared helpers (run, _call, console, print_json, money) live there

    return cli


def pie_show(account_id: str) -> None:
    """The account's pie tree: every slice with its target within its parent pie."""
    cli = _cli()
    view = cli.run(cli._call(GetPortfolio(account_id=account_id)))
    if not view.get("pie_name"):
        cli.console.print(f"{account_id} has no pie")
        return
    cli.console.print(f"[bold]{view['pie_name']}[/bold]")
    for s in view["slices"]:
        name = s["path"].rsplit("/", 1)[-1] + ("" if s["symbol"] else "/")
        cli.console.print(f"{'  ' * (s['depth'] + 1)}{Decimal(s['target_pct']):>3.0f}%  {name}")


def pie_models(
    name: Annotated[str | None, typer.Argument(help="Print this model's tree as YAML (to copy and edit).")] = None,
) -> None:
    """The model pies shipped with the service; with a NAME, that model as YAML for ``m1 pie set``."""
    cli = _cli()
    models = cli.run(cli._call(ListModels()))["models"]
    if name is not None:
        found = next((m for m in models if m["key"] == name), None)
        if found is None:
            cli.console.print(f"[red]unknown model:[/red] {name} (known: {', '.join(m['key'] for m in models)})")
            raise typer.Exit(1)
        typer.echo(yaml.safe_dump(_plain(found["pie"]), sort_keys=False), nl=False)
        return
    table = Table(title="model pies (read-only: apply one, or copy it with `m1 pie models NAME > my.yaml`)")
    for column in ("name", "pie", "description"):
        table.add_column(column)
    for m in models:
        table.add_row(m["key"], m["pie"]["name"], m["description"])
    cli.console.print(table)


def _plain(pie: dict) -> dict:
    """A PieSpec as the YAML a holder writes: no null fields."""
    return {"name": pie["name"], "slices": [
        {"target": s["target"], "symbol": s["symbol"]} if s.get("symbol") else {"target": s["target"],
                                                                                 "pie": _plain(s["pie"])}
        for s in pie["slices"]
    ]}


def pie_apply(account_id: str, model: str) -> None:
    """Set a model pie as the account's pie (a copy: later edits change only the account's)."""
    cli = _cli()
    result = cli.run(cli._call(ApplyModel(account_id=account_id, model=model)))
    cli.console.print(f"pie '{result['pie']['name']}' (model {model}) set for {account_id}")


def settings(
    account_id: str,
    auto_invest: Annotated[bool | None, typer.Option("--auto-invest/--no-auto-invest",
                                                     help="Invest cash above the minimum automatically.")] = None,
    minimum_cash: Annotated[str | None, typer.Option(help="Cash kept uninvested, e.g. 100.00.")] = None,
    dividends: Annotated[Dividends | None, typer.Option(help="Dividends to cash, or reinvested.")] = None,
) -> None:
    """Show an account's settings, or change the ones given."""
    cli = _cli()
    try:
        command = SetSettings(account_id=account_id, auto_invest=auto_invest,
                              minimum_cash=cli.money(minimum_cash) if minimum_cash is not None else None,
                              dividends=dividends.value if dividends else None)
    except ValidationError as exc:
        raise typer.BadParameter(explain(exc)) from None
    result = cli.run(cli._call(command))
    cli.console.print(f"{account_id}: auto-invest {'on' if result['auto_invest'] else 'off'}, "
                      f"minimum cash ${result['minimum_cash']}, dividends to {result['dividends']}")


def rebalance(
    account_id: str,
    pie: Annotated[str, typer.Option("--pie", help="Rebalance only the pie at this path, e.g. Stocks/Intl.")] = "",
    top_level_only: Annotated[bool, typer.Option("--top-level-only",
                                                 help="Set only the pie's own slices to target (M1's way).")] = False,
    cancel: Annotated[str | None, typer.Option(help="Cancel this rebalance (its batch id) before its window.")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Sell overweight and buy underweight slices in the next window; prints the trades and
    the estimated realised gain. ``--cancel BATCH`` withdraws a rebalance still pending."""
    cli = _cli()
    if cancel is not None:
        try:
            batch_id = uuid.UUID(cancel)
        except ValueError:
            raise typer.BadParameter(f"not a batch id: {cancel}") from None
        window = cli.run(cli._call(CancelIntents(batch_id=batch_id)))
        cli.run(cli._call(CancelRebalance(account_id=account_id, batch_id=batch_id,
                                          intent_ids=window["cancelled"])))
        cli.console.print(f"cancelled {len(window['cancelled'])} intents of rebalance {cancel}")
        for intent, reason in window.get("refused", {}).items():
            cli.console.print(f"  not cancelled {intent}: {reason}")
        return
    plan = cli.run(cli._call(Rebalance(account_id=account_id, path=pie, top_level_only=top_level_only)))
    if as_json:
        cli.print_json(plan)
        return
    if not plan["trades"]:
        cli.console.print(f"{account_id}: already at target, nothing to trade")
        return
    table = Table(title=f"rebalance {plan['batch_id']} of {account_id} {pie or '(whole portfolio)'}"
                        f"{' top level only' if top_level_only else ''}: next window")
    for column in ("slice", "side", "amount"):
        table.add_column(column, justify="right" if column == "amount" else "left")
    for t in plan["trades"]:
        table.add_row(t["path"], t["side"], f"${t['amount']}")
    cli.console.print(table)
    if Decimal(plan["left_out"]):
        cli.console.print(f"buys under $1 left out: ${plan['left_out']} stays in cash")
    cli.console.print(f"estimated realised gain: ${plan['estimated_gain']} (at each slice's average cost)")


def register(app: typer.Typer, pie_app: typer.Typer) -> None:
    pie_app.command("show")(pie_show)
    pie_app.command("models")(pie_models)
    pie_app.command("apply")(pie_apply)
    app.command("settings")(settings)
    app.command("rebalance")(rebalance)
