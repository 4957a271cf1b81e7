"""``m1 dead-letters``: what an operator reads of a refused message, and which services it asks."""

from __future__ import annotations

from rich.console import Console
from typer.testing import CliRunner

from m1 import cli, dead_letter_commands
from m1.dead_letter_commands import dead_letter_lines
from shared.contracts import ListDeadLetters

LETTER = {"id": 7, "message_id": "2c2a5382-439d-4cda-a9c6-c25434b1c293", "routing_key": "funding.deposit.received",
          "queue": "ledger.funding", "correlation_id": "2c2a5382-439d-4cda-a9c6-c25434b1c293",
          "account_id": "late-1", "reason": "unknown account late-1 [sic]", "received_at": "2026-11-25T14:30:05+00:00",
          "replayed_at": None, "answered": False, "size": 143, "body": None}


def test_a_dead_letter_reads_service_and_id_first_then_the_reason_and_where_it_came_from():
    lines = dead_letter_lines({**LETTER, "service": "ledger"})
    assert lines == [
        "ledger 7  funding.deposit.received  2026-11-25 14:30:05 UTC",
        "    account late-1, queue ledger.funding, 143 bytes",
        "    reason: unknown account late-1 [sic]",
        "    message 2c2a5382-439d-4cda-a9c6-c25434b1c293",
        "    correlation 2c2a5382-439d-4cda-a9c6-c25434b1c293"]
    assert all(len(line) <= 80 for line in lines)  # a terminal's width, ids whole
    replayed = dead_letter_lines({**LETTER, "service": "ledger", "replayed_at": "2026-11-25T09:31:00-05:00"})
    assert replayed[-1] == "    replayed 2026-11-25 14:31:00 UTC"
    request = dead_letter_lines({**LETTER, "service": "pie", "routing_key": "pie.pie.set", "answered": True})
    assert request[2] == "    a request: its sender was told"


def test_list_asks_every_service_and_names_the_ones_that_did_not_answer(monkeypatch):
    asked = []

    async def each(services, query):
        asked.append((services, query))
        return [{**LETTER, "service": "ledger"}], ["market: no answer (is it running?)"]

    monkeypatch.setattr(dead_letter_commands, "_ask_each", each)
    monkeypatch.setattr(cli, "console", Console(width=200))
    result = CliRunner().invoke(cli.app, ["dead-letters", "list", "--replayed"])
    assert result.exit_code == 0, result.output
    assert asked == [(["ledger", "pie", "order", "window", "margin", "notification", "market"],
                      ListDeadLetters(replayed=True, limit=20))]
    # printed as it is (rich markup would eat the brackets of a reason)
    assert "reason: unknown account late-1 [sic]" in result.output
    assert "market: no answer (is it running?)" in result.output


def test_list_fails_when_no_service_answers(monkeypatch):
    async def none(services, query):
        return [], [f"{s}: no answer (is it running?)" for s in services]

    monkeypatch.setattr(dead_letter_commands, "_ask_each", none)
    result = CliRunner().invoke(cli.app, ["dead-letters", "list", "window"])
    assert result.exit_code == 1 and "window: no answer" in result.output
