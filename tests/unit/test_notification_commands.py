"""``m1 channels``, ``m1 deliveries`` and ``m1 notifications --since`` build the right query and
print the service's answer."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import typer
from rich.console import Console
from typer.testing import CliRunner

from m1 import cli
from m1.notification_commands import parse_since
from shared.contracts import GetChannels, GetDeliveries, GetFeed, ResendDeliveries, SetChannels

SECRET = "whsec-0123456789abcdef"


@pytest.fixture
def asked(monkeypatch):
    commands = []
    answers = {
        SetChannels: lambda c: {"account_id": c.account_id, "webhook_url": c.webhook_url,
                                "webhook_secret_set": c.webhook_secret is not None, "email": c.email},
        GetChannels: lambda c: {"account_id": c.account_id, "webhook_url": None, "webhook_secret_set": False,
                                "email": "a@example.com"},
        GetDeliveries: lambda c: {"account_id": c.account_id, "deliveries": [
            {"id": "0b9e", "feed_id": 7, "kind": "deposit_received", "channel": "webhook", "status": "failed",
             "attempts": 8, "last_error": "HTTP 503: down", "next_attempt_at": None, "delivered_at": None,
             "created_at": "2026-11-25T14:00:00+00:00"}]},
        GetFeed: lambda c: {"account_id": c.account_id, "entries": []},
        ResendDeliveries: lambda c: {"account_id": c.account_id, "deliveries": [{}, {}]},
    }

    async def answer(command):
        commands.append(command)
        return answers[type(command)](command)

    monkeypatch.setattr(cli, "_call", answer)
    monkeypatch.setattr(cli, "console", Console(width=200))
    return commands


def test_channels_set_sends_the_webhook_with_its_secret_and_the_email(asked):
    result = CliRunner().invoke(cli.app, ["channels", "set", "acc-1", "--webhook", "https://h.example/m1",
                                          "--secret", SECRET, "--email", "a@example.com"])
    assert result.exit_code == 0, result.output
    assert asked == [SetChannels(account_id="acc-1", webhook_url="https://h.example/m1", webhook_secret=SECRET,
                                 email="a@example.com")]
    assert "webhook https://h.example/m1 (signed); email a@example.com" in result.output
    assert SECRET not in result.output


def test_channels_set_refuses_a_webhook_without_a_secret(asked):
    result = CliRunner().invoke(cli.app, ["channels", "set", "acc-1", "--webhook", "https://h.example/m1"],
                                env={"M1_WEBHOOK_SECRET": ""})
    assert result.exit_code != 0 and asked == []


def test_channels_show_reads_the_channels(asked):
    result = CliRunner().invoke(cli.app, ["channels", "show", "acc-1"])
    assert result.exit_code == 0, result.output
    assert asked == [GetChannels(account_id="acc-1")]
    assert "log on; webhook off; email a@example.com" in result.output


def test_deliveries_lists_status_attempts_and_the_last_error(asked):
    result = CliRunner().invoke(cli.app, ["deliveries", "acc-1", "--status", "failed"])
    assert result.exit_code == 0, result.output
    assert asked == [GetDeliveries(account_id="acc-1", status="failed")]
    assert "failed" in result.output and "HTTP 503: down" in result.output and " 8 " in result.output


def test_notifications_since_an_age_asks_for_entries_after_that_time(asked):
    result = CliRunner().invoke(cli.app, ["notifications", "acc-1", "--since", "2h"])
    assert result.exit_code == 0, result.output
    (query,) = asked
    assert query.since is not None and (datetime.now(UTC) - query.since).total_seconds() == pytest.approx(7200, abs=60)


def test_since_reads_an_age_or_an_iso_time():
    now = datetime(2026, 11, 25, 14, 0, tzinfo=UTC)
    assert parse_since("30m", now) == datetime(2026, 11, 25, 13, 30, tzinfo=UTC)
    assert parse_since("1d", now) == datetime(2026, 11, 24, 14, 0, tzinfo=UTC)
    assert parse_since("2026-11-25T09:00", now) == datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
    assert parse_since(None) is None
    with pytest.raises(typer.BadParameter):
        parse_since("yesterday")


def test_deliveries_resend_queues_the_failed_ones_again_then_lists(asked):
    result = CliRunner().invoke(cli.app, ["deliveries", "acc-1", "--resend"])
    assert result.exit_code == 0, result.output
    assert asked == [ResendDeliveries(account_id="acc-1"), GetDeliveries(account_id="acc-1")]
    assert "2 failed deliveries queued again" in result.output
