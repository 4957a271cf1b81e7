"""RabbitMQ and PostgreSQL restart under load: every service reconnects and carries on."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import uuid
from decimal import Decimal
from pathlib import Path

import pytest

from m1.runner import health
from shared.contracts import DepositReceived, OpenAccount
from tests.e2e.test_deposit_flow import assert_books_balance
from tests.support import eventually, fetch, fetchval
from tests.support_ledger import assert_ledger_checks_out

pytestmark = pytest.mark.e2e

DEPOSITS = 150


def run(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)


def restart_rabbitmq() -> None:
    ctl = shutil.which("rabbitmqctl") or "/usr/sbin/rabbitmqctl"
    run(ctl, "-q", "stop_app")
    run(ctl, "-q", "start_app")
    run(ctl, "-q", "await_startup")


def restart_postgresql() -> None:
    version = sorted(p.name for p in Path("/etc/postgresql").iterdir())[-1]
    run("pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart")


async def publish_until_confirmed(client, event) -> None:
    """What a well-behaved upstream does: retry a publish until the broker confirms it."""
    for _ in range(120):
        try:
            await client.publish_event(event, str(event.deposit_id))
            return
        except Exception:
            await asyncio.sleep(0.5)
    raise AssertionError("the broker never came back")


async def wait_for_database(url: str) -> None:
    async def up():
        try:
            return await fetchval(url, "SELECT true")
        except Exception:
            return False

    await eventually(up, timeout=60, interval=0.5)


@pytest.mark.parametrize("restart", [restart_rabbitmq, restart_postgresql], ids=["rabbitmq", "postgresql"])
async def test_deposits_published_across_a_restart_are_all_booked_exactly_once(system, client, restart):
    settings = system.settings
    accounts = [f"restart-{uuid.uuid4().hex[:8]}" for _ in range(10)]
    for account in accounts:
        await client.call(OpenAccount(account_id=account))
    events = [DepositReceived(deposit_id=uuid.uuid4(), account_id=accounts[i % 10], amount=Decimal("10.01"),
                              currency="USD", received_at="2026-11-25T10:00:00+00:00") for i in range(DEPOSITS)]
    for event in events[: DEPOSITS // 2]:
        await publish_until_confirmed(client, event)
    await asyncio.to_thread(restart)
    await wait_for_database(settings.database_url)
    for event in events[DEPOSITS // 2:]:
        await publish_until_confirmed(client, event)

    booked = "SELECT count(*) FROM ledger.funding WHERE account_id = ANY($1::text[])"
    await eventually(lambda: _count_is(settings.database_url, booked, accounts, DEPOSITS), timeout=90, interval=0.5)
    rows = await fetch(settings.database_url, "SELECT amount FROM ledger.balances WHERE book = ANY($1::text[])",
                       [f"customer:{a}:cash" for a in accounts])
    assert sorted(r["amount"] for r in rows) == [Decimal("150.15")] * 10
    await assert_books_balance(settings.database_url)
    notified = "SELECT count(*) FROM notification.feed WHERE account_id = ANY($1::text[])"
    await eventually(lambda: _count_is(settings.database_url, notified, accounts, DEPOSITS), timeout=60, interval=0.5)
    for name in system.names:
        status = await eventually(lambda n=name: asyncio.to_thread(_healthy, system, n), timeout=60, interval=0.5)
        assert status
    await assert_ledger_checks_out(client)  # the audit is clean and the export passes bean-check


def _healthy(system, name):
    h = health(system.port(name))
    return h if h and h.get("status") == "ok" else None


async def _count_is(url, sql, accounts, n):
    return await fetchval(url, sql, accounts) == n
