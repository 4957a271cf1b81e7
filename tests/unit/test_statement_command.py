"""``m1 statement`` prints what of the cash is spoken for (held for trades, waiting
withdrawals) beside what can be withdrawn."""

from __future__ import annotations

from rich.console import Console
from typer.testing import CliRunner

from m1 import cli

CASH = {"cash": "50.00", "settled": "50.00", "unsettled": "0.00", "on_hold": "0.00", "held_for_trades": "30.00",
        "waiting_withdrawals": "0.00", "withdrawable": "20.00", "market_value": "0.00", "total": "50.00"}
VIEW = {"account_id": "a", "month": "2026-11", "opening": {"cash": "0.00", "positions": {}},
        "closing": {"cash": "50.00", "positions": {}}, "movements": [], "holdings": [], "cash": CASH}


def statement_output(monkeypatch, view: dict) -> str:
    async def answer(query):
        return view

    monkeypatch.setattr(cli, "_call", answer)
    monkeypatch.setattr(cli, "console", Console(width=200))
    result = CliRunner().invoke(cli.app, ["statement", "a", "--month", "2026-11"])
    assert result.exit_code == 0, result.output
    return result.output


def test_cash_held_for_trades_is_shown_beside_the_withdrawable_cash(monkeypatch):
    output = statement_output(monkeypatch, VIEW)
    assert "held for trades $30.00, withdrawable $20.00" in output
    assert "waiting withdrawals" not in output  # nothing waits: not shown


def test_a_statement_without_the_holds_still_prints(monkeypatch):
    cash = {k: v for k, v in CASH.items() if k not in ("held_for_trades", "waiting_withdrawals")}
    output = statement_output(monkeypatch, {**VIEW, "cash": cash | {"withdrawable": "50.00"}})
    assert "deposits on hold $0.00, withdrawable $50.00" in output
