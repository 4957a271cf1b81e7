"""The README's first command, ``m1 up --demo``, and the CLI against the system it runs."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from decimal import Decimal
from pathlib import Path

import pytest

from shared.db import drop_database
from tests.support import PG_BASE, create_vhost, delete_vhost, unique_name

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
M1 = [sys.executable, "-m", "m1.cli"]


@pytest.fixture(scope="module")
def cli_env(tmp_path_factory):
    vhost, database = unique_name("m1-cli"), unique_name("m1_cli")
    env = {**os.environ, "M1_RABBITMQ_URL": create_vhost(vhost), "M1_DATABASE_URL": f"{PG_BASE}/{database}",
           "M1_HTTP_PORT_OFFSET": str(random.randrange(1000, 20000, 100)), "M1_RELAY_POLL_SECONDS": "0.2",
           "COLUMNS": "200"}
    env.pop("M1_HTTP_PORT", None)
    yield env
    asyncio.run(drop_database(env["M1_DATABASE_URL"]))
    delete_vhost(vhost)


def m1(env, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run([*M1, *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    if check:
        assert result.returncode == 0, result.stdout + result.stderr
    return result


def until(predicate, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := predicate():
            return result
        time.sleep(0.3)
    raise AssertionError("condition not met")


def test_up_with_the_demo_then_the_cli_then_ctrl_c_stops_everything_cleanly(cli_env, tmp_path):
    up = subprocess.Popen([*M1, "up", "--demo", "--logs", str(tmp_path)], env=cli_env, cwd=ROOT,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    try:
        for line in up.stdout:
            lines.append(line)
            if "press Ctrl-C" in line or up.poll() is not None:
                break
        out = "".join(lines)
        assert "demo finished: deposit invested, replay ignored, order executed, books reconcile" in out, out
        assert "no change" in out and "Trades executed" in out
        assert "order executed: 1.00000 share" in out and "every balance reconciles" in out

        account = f"cli-{uuid.uuid4().hex[:6]}"
        assert "open" in m1(cli_env, "account", "open", account, "--plan", "plus").stdout
        until(lambda: m1(cli_env, "pie", "set", account, "examples/pies/sixty-forty.yaml", check=False).returncode == 0)
        m1(cli_env, "deposit", account, "500.00")
        until(lambda: json.loads(m1(cli_env, "portfolio", account, "--json").stdout)["pending_buys"] == "500.00")
        closed = m1(cli_env, "window", "close").stdout
        assert "net buy VTI $300.00" in closed and "net buy BND $200.00" in closed
        view = until(lambda: (v := json.loads(m1(cli_env, "portfolio", account, "--json").stdout))["invested"] != "0.00"
                     and v)
        assert [s["symbol"] for s in view["slices"]] == ["VTI", "BND"]
        assert Decimal(view["cash"]) == Decimal("0.00")
        # Published: more than cash + investments ($500), so the pie refuses it and the ledger rejects it.
        refused = m1(cli_env, "withdraw", account, "600.00")
        assert "requested" in refused.stdout
        feed = until(lambda: (f := json.loads(m1(cli_env, "notifications", account, "--json").stdout))
                     and len(f) >= 3 and f)
        assert [e["kind"] for e in feed] == ["deposit_received", "trades_executed", "funding_rejected"]
        assert "exceeds the withdrawable value" in feed[-1]["message"]
        table = m1(cli_env, "portfolio", account).stdout
        assert "VTI" in table and "total" in table
        bad = m1(cli_env, "pie", "set", account, str(_bad_pie(tmp_path)), check=False)
        assert bad.returncode == 1 and "sum" in bad.stdout
        # The ledger's operator commands: a clean audit, an export bean-check accepts, a statement.
        until(lambda: "the books are clean" in m1(cli_env, "ledger", "audit", check=False).stdout)
        m1(cli_env, "ledger", "export", "--format", "beancount", "--output", str(tmp_path / "books.beancount"))
        checked = subprocess.run([str(Path(sys.executable).parent / "bean-check"), str(tmp_path / "books.beancount")],
                                 capture_output=True, text=True, timeout=60)
        assert checked.returncode == 0, checked.stdout + checked.stderr
        statement = m1(cli_env, "statement", account).stdout
        assert "deposit" in statement and "500.00" in statement and "withdrawable" in statement
        # The bank's deposit for an account not opened yet is refused; the operator finds it,
        # opens the account and replays the deposit, once.
        late = f"late-{uuid.uuid4().hex[:6]}"
        m1(cli_env, "deposit", late, "42.00")
        [letter] = until(lambda: [d for d in json.loads(m1(cli_env, "dead-letters", "list", "ledger", "--json").stdout)
                                  if d["account_id"] == late])
        assert letter["reason"] == f"unknown account {late}"
        everywhere = m1(cli_env, "dead-letters", "list").stdout  # every service answers
        assert f"ledger {letter['id']}  funding.deposit.received" in everywhere, everywhere
        assert f"reason: unknown account {late}" in everywhere
        assert '"amount": "42.00"' in m1(cli_env, "dead-letters", "show", "ledger", str(letter["id"])).stdout
        m1(cli_env, "account", "open", late)
        replayed = m1(cli_env, "dead-letters", "replay", "ledger", str(letter["id"])).stdout
        assert f"message {letter['message_id']}) replayed to ledger.funding" in replayed, replayed
        until(lambda: "42.00" in m1(cli_env, "statement", late, check=False).stdout)
        again = m1(cli_env, "dead-letters", "replay", "ledger", str(letter["id"]), check=False)
        assert again.returncode == 1 and "was replayed at" in again.stdout, again.stdout
    finally:
        up.send_signal(signal.SIGINT)
        rest, _ = up.communicate(timeout=60)
    assert up.returncode == 0, rest
    assert "stopped: ledger=0, pie=0, order=0, window=0, margin=0, notification=0, market=0" in rest


def _bad_pie(tmp_path: Path) -> Path:
    path = tmp_path / "bad.yaml"
    path.write_text("name: Bad\nslices:\n  - {symbol: VTI, target: 60}\n  - {symbol: BND, target: 30}\n")
    return path
