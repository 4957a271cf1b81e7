"""``m1 gains``: the year's realised gains per sale and in total, as a table, JSON or CSV."""

from __future__ import annotations

import csv
import io
import json

from typer.testing import CliRunner

from m1 import cli
from shared.contracts import GainsReport, GetGains

REPORT = GainsReport.model_validate({
    "account_id": "acc-1", "year": 2026,
    "sales": [
        {"sale_id": "w1:i1", "symbol": "VTI", "quantity": "10.00000", "acquired": "2026-05-01", "sold": "2026-06-15",
         "proceeds": "1100.00", "cost": "1200.00", "gain": "-100.00", "term": "short", "wash_sale": True},
        {"sale_id": "w1:i1", "symbol": "VTI", "quantity": "2.00000", "acquired": "2025-01-10", "sold": "2026-06-15",
         "proceeds": "220.00", "cost": "200.00", "gain": "20.00", "term": "long", "wash_sale": False},
    ],
    "short_term": {"proceeds": "1100.00", "cost": "1200.00", "gain": "-100.00", "wash_sales": 1},
    "long_term": {"proceeds": "220.00", "cost": "200.00", "gain": "20.00", "wash_sales": 0},
    "total": {"proceeds": "1320.00", "cost": "1400.00", "gain": "-80.00", "wash_sales": 1},
}).model_dump(mode="json")


def invoke(monkeypatch, *args: str):
    asked = []

    async def answer(command):
        asked.append(command)
        return REPORT

    monkeypatch.setattr(cli, "_call", answer)
    result = CliRunner().invoke(cli.app, ["gains", *args], env={"COLUMNS": "200"})
    return result, asked


def test_csv_has_one_row_per_lot_closed_with_1099b_columns(monkeypatch):
    result, asked = invoke(monkeypatch, "acc-1", "--year", "2026", "--csv")
    assert result.exit_code == 0, result.output
    assert asked == [GetGains(account_id="acc-1", year=2026)]
    rows = list(csv.DictReader(io.StringIO(result.output)))
    assert [(r["symbol"], r["acquired"], r["sold"], r["proceeds"], r["cost"], r["gain"], r["term"], r["wash_sale"])
            for r in rows] == [("VTI", "2026-05-01", "2026-06-15", "1100.00", "1200.00", "-100.00", "short", "True"),
                               ("VTI", "2025-01-10", "2026-06-15", "220.00", "200.00", "20.00", "long", "False")]


def test_json_is_the_report(monkeypatch):
    result, _ = invoke(monkeypatch, "acc-1", "--year", "2026", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == REPORT


def test_table_shows_each_sale_and_the_short_long_and_total_lines(monkeypatch):
    result, _ = invoke(monkeypatch, "acc-1", "--year", "2026")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    sale = next(line for line in lines if "1100.00" in line and "2026-05-01" in line)
    assert "-100.00" in sale and "short" in sale and " W " in sale
    for label, gain in (("short-term", "-100.00"), ("long-term", "20.00"), ("total", "-80.00")):
        line = next(line for line in lines if f" {label} " in line)
        assert gain in line


def test_json_and_csv_together_are_refused(monkeypatch):
    result, asked = invoke(monkeypatch, "acc-1", "--year", "2026", "--json", "--csv")
    assert result.exit_code != 0 and asked == []
