"""``m1 window show`` prints a window's summary from the window service's answer."""

from __future__ import annotations

import uuid

from rich.console import Console
from typer.testing import CliRunner

from m1 import cli

VIEW = {"window_id": "5b0c5d3e-0000-4000-8000-000000000001", "status": "allocated",
        "closed_at": "2026-11-25T14:30:00+00:00",
        "summary": {"intents": 4, "accounts": 2, "rejected": 1, "carried_over": 0, "securities": {
            "BND": {"intents": 2, "gross_buy": "40.00", "gross_sell": "100.00", "net": "-60.00", "side": "sell",
                    "price": "72.50", "quantity": "0.82758", "amount": "60.00", "residue_quantity": "0.00002",
                    "residue_amount": "0.00"}}}}


def test_window_show_prints_the_summary(monkeypatch):
    asked = []

    async def answer(command):
        asked.append(command)
        return VIEW

    monkeypatch.setattr(cli, "_call", answer)
    monkeypatch.setattr(cli, "console", Console(width=200))
    result = CliRunner().invoke(cli.app, ["window", "show", VIEW["window_id"]])
    assert result.exit_code == 0, result.output
    assert "4 intents from 2 accounts; 1 rejected, 0 carried over" in result.output
    assert "BND" in result.output and "0.82758" in result.output and "0.00002" in result.output
    assert asked[0].window_id == uuid.UUID(VIEW["window_id"])


def test_window_show_refuses_a_malformed_id():
    result = CliRunner().invoke(cli.app, ["window", "show", "nope"])
    assert result.exit_code != 0


def test_window_abandon_sends_the_reason_and_prints_what_carried_over(monkeypatch):
    asked = []
    abandoned = {**VIEW, "status": "abandoned",
                 "summary": {"intents": 3, "accounts": 2, "rejected": 0, "carried_over": 3, "securities": {},
                             "abandoned": "ledger hold dead-lettered"}}

    async def answer(command):
        asked.append(command)
        return abandoned

    monkeypatch.setattr(cli, "_call", answer)
    monkeypatch.setattr(cli, "console", Console(width=200))
    result = CliRunner().invoke(cli.app, ["window", "abandon", VIEW["window_id"], "--reason",
                                          "ledger hold dead-lettered"])
    assert result.exit_code == 0, result.output
    assert "abandoned: 3 intents carried over to the next window" in result.output
    assert asked[0].window_id == uuid.UUID(VIEW["window_id"]) and asked[0].reason == "ledger hold dead-lettered"
    result = CliRunner().invoke(cli.app, ["window", "show", VIEW["window_id"]])
    assert "abandoned before it traded: ledger hold dead-lettered" in result.output


def test_window_abandon_needs_a_reason_and_a_window_id():
    assert CliRunner().invoke(cli.app, ["window", "abandon", VIEW["window_id"]]).exit_code != 0
    assert CliRunner().invoke(cli.app, ["window", "abandon", "nope", "--reason", "x"]).exit_code != 0
    assert CliRunner().invoke(cli.app, ["window", "abandon", VIEW["window_id"], "--reason", ""]).exit_code != 0


def _state(window_id: str, status: str, batches, booked, waiting, abandoned=None) -> dict:
    return {"window_id": window_id, "status": status, "session": "morning", "closed_at": "2026-11-25T14:30:00+00:00",
            "batches": batches, "booked_batches": booked, "waiting_for": waiting, "abandoned": abandoned}


def test_window_list_unfinished_prints_what_each_waits_for_and_exits_1(monkeypatch):
    asked = []
    late = _state(VIEW["window_id"], "allocated", 50, 48, "the ledger to book its fills: 48 of 50 batches booked")

    async def answer(command):
        asked.append(command)
        return {"windows": [late]}

    monkeypatch.setattr(cli, "_call", answer)
    monkeypatch.setattr(cli, "console", Console(width=250))
    result = CliRunner().invoke(cli.app, ["window", "list", "--unfinished"])
    assert result.exit_code == 1, result.output  # a job checking for stuck windows sees it
    assert f"{VIEW['window_id']}  allocated, 48 of 50 fills batches booked" in result.output  # the whole id
    assert "closed 2026-11-25 14:30 UTC (the morning window)" in result.output
    assert "waiting for the ledger to book its fills: 48 of 50 batches booked" in result.output
    assert asked[0].unfinished is True and asked[0].limit == 20


def test_window_list_prints_finished_and_abandoned_windows_and_exits_0(monkeypatch):
    listed = [_state(VIEW["window_id"], "allocated", 3, 3, None),
              _state("5b0c5d3e-0000-4000-8000-000000000002", "abandoned", None, None, None, "ledger hold lost")]

    async def answer(command):
        return {"windows": listed}

    monkeypatch.setattr(cli, "_call", answer)
    monkeypatch.setattr(cli, "console", Console(width=250))
    result = CliRunner().invoke(cli.app, ["window", "list", "--limit", "5"])
    assert result.exit_code == 0, result.output
    assert "allocated, 3 of 3 fills batches booked" in result.output and "waiting for" not in result.output
    assert "abandoned: ledger hold lost" in result.output


def test_window_list_unfinished_with_none_says_so(monkeypatch):
    async def answer(command):
        return {"windows": []}

    monkeypatch.setattr(cli, "_call", answer)
    result = CliRunner().invoke(cli.app, ["window", "list", "--unfinished"])
    assert result.exit_code == 0 and "no unfinished window" in result.output
