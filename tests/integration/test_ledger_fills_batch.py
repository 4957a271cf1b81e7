"""A window's fills batches booked set-based by the ledger (real RabbitMQ and PostgreSQL):
the postings match the pure reference (``domain.fills_batch``), one ``ledger.fills.booked``
per batch carries every account's fills, cash, positions and version, a replay books
nothing, and a batch naming an unknown account is refused whole."""

from __future__ import annotations

import random
import uuid
from collections import defaultdict
from decimal import Decimal as D

import pytest

from services.ledger import domain
from shared.contracts import (
    Execution,
    Fill,
    FillsBatch,
    FillsBooked,
    Residue,
)
from tests.integration import test_ledger_lots
from tests.integration.test_ledger_lots import open_funded
from tests.integration.test_order_margin import handled, new_symbol, publish
from tests.integration.test_window_market import Seen, listen
from tests.support import eventually, fetch, fetchval
from tests.support_ledger import assert_ledger_checks_out

ledger = test_ledger_lots.ledger  # the ledger service fixture, shared

pytestmark = pytest.mark.integration


def window_of(accounts: list[str], symbols: list[str], seed: int) -> tuple[list[Execution], list[Fill], list[Residue]]:
    """A window's buys over the accounts, allocated at one price per symbol, with its
    executions and residues (rounding kept by the firm): what the window service sends."""
    rng = random.Random(seed)
    prices = {s: D(rng.randint(1_000, 50_000)) / 100 for s in symbols}
    fills = []
    for account in accounts:
        for symbol in rng.sample(symbols, k=2):
            for _ in range(rng.randint(1, 2)):  # two fills of one security: one securities leg
                amount = D(rng.randint(100, 5_000)) / 100
                quantity = (amount / prices[symbol]).quantize(D("0.00001"), rounding="ROUND_DOWN")
                fills.append(Fill(intent_id=uuid.uuid4(), account_id=account, symbol=symbol, side="buy",
                                  quantity=quantity, amount=amount, price=prices[symbol]))
    executions, residues = [], []
    for symbol in symbols:
        mine = [f for f in fills if f.symbol == symbol]
        amount = sum((f.amount for f in mine), D("0.00"))
        quantity = (amount / prices[symbol]).quantize(D("0.00001"), rounding="ROUND_DOWN")
        executions.append(Execution(symbol=symbol, side="buy", quantity=quantity, price=prices[symbol],
                                    amount=amount))
        residues.append(Residue(symbol=symbol, quantity=quantity - sum((f.quantity for f in mine), D(0)),
                                amount=D("0.00")))
    return executions, fills, residues


def batch_of(window_id, index: int, batches: int, fills: list[Fill], executions=(), residues=()) -> FillsBatch:
    rows = [(f.intent_id, f.account_id, f.symbol, f.side, format(f.quantity, "f"), format(f.amount, "f"),
             format(f.price, "f")) for f in fills]
    return FillsBatch(window_id=window_id, batch=index, batches=batches, fills=rows, executions=list(executions),
                      residues=list(residues))


def summed(postings) -> dict[tuple[str, str], D]:
    out: dict[tuple[str, str], D] = defaultdict(D)
    for p in postings:
        out[(p.book, p.asset)] += p.amount
    return {k: v for k, v in out.items() if v != 0}


async def test_batches_book_like_the_reference_and_emit_one_event_each(bus, settings, ledger):
    accounts = sorted([await open_funded(bus, settings, "500.00") for _ in range(4)])
    symbols = [new_symbol() for _ in range(3)]
    executions, fills, residues = window_of(accounts, symbols, seed=11)
    window_id = uuid.uuid4()
    first = [f for f in fills if f.account_id in accounts[:2]]
    second = [f for f in fills if f.account_id in accounts[2:]]
    booked = Seen(await listen(bus, FillsBooked.TYPE))
    ids = [await publish(bus, batch_of(window_id, 0, 2, first, executions, residues)),
           await publish(bus, batch_of(window_id, 1, 2, second))]
    await handled(settings, "ledger", *ids)

    # Each entry's postings are the reference's legs summed per book and asset.
    for index, (part, ex, res) in enumerate([(first, executions, residues), (second, [], [])]):
        rows = await fetch(settings.database_url,
                           """SELECT p.book, p.asset, p.amount FROM ledger.postings p JOIN ledger.entries e USING (entry_id)
                              WHERE e.kind = 'fill' AND e.reference = $1""", f"{window_id}:{index}")
        assert {(r["book"], r["asset"]): r["amount"] for r in rows} == summed(
            domain.fills_batch(window_id, ex, part, res))
        assert len(rows) == len({(r["book"], r["asset"]) for r in rows})  # one leg per book and asset
    assert await fetchval(settings.database_url, "SELECT count(*) FROM ledger.trades WHERE window_id = $1",
                          str(window_id)) == len(fills)

    # One event per batch: every account of it, sorted, with its fills, cash, positions, version.
    events = await eventually(lambda: _two(booked, window_id))
    assert sorted(e.batch for e in events) == [0, 1]
    for event in events:
        assert [a.account_id for a in event.accounts] == sorted({f.account_id for f in (first if event.batch == 0
                                                                                       else second)})
        for part in event.accounts:
            mine = [f for f in fills if f.account_id == part.account_id]
            assert sorted(part.fills, key=lambda f: f.intent_id) == sorted(mine, key=lambda f: f.intent_id)
            assert part.cash == D("500.00") - sum((f.amount for f in mine), D("0.00"))
            held = defaultdict(D)
            for f in mine:
                held[f.symbol] += f.quantity
            assert part.positions == dict(held)
            assert part.version == await fetchval(settings.database_url,
                                                  "SELECT version FROM ledger.accounts WHERE account_id = $1",
                                                  part.account_id)

    # The same batch again under another message id books and emits nothing more.
    postings = await fetchval(settings.database_url, "SELECT count(*) FROM ledger.postings")
    await handled(settings, "ledger", await publish(bus, batch_of(window_id, 1, 2, second)))
    assert await fetchval(settings.database_url, "SELECT count(*) FROM ledger.postings") == postings
    assert len(await _two(booked, window_id)) == 2
    await assert_ledger_checks_out(bus)


async def _two(seen: Seen, window_id) -> list[FillsBooked] | None:
    events = [FillsBooked.model_validate(b) for b in await seen.where(window_id=str(window_id))]
    return events if len(events) >= 2 else None


async def test_a_batch_with_an_unknown_account_is_refused_whole(bus, settings, ledger):
    known = await open_funded(bus, settings, "100.00")
    symbol = new_symbol()
    fills = [Fill(intent_id=uuid.uuid4(), account_id=a, symbol=symbol, side="buy", quantity=D("1.00000"),
                  amount=D("10.00"), price=D("10.00")) for a in (known, "acc-nobody")]
    execution = Execution(symbol=symbol, side="buy", quantity=D("2.00000"), price=D("10.00"), amount=D("20.00"))
    window_id = uuid.uuid4()
    message_id = await publish(bus, batch_of(window_id, 0, 1, fills, [execution]))
    await handled(settings, "ledger", message_id)
    [letter] = await fetch(settings.database_url, "SELECT reason FROM ledger.dead_letters WHERE message_id = $1",
                           message_id)
    assert letter["reason"] == "fills for unknown accounts: acc-nobody"
    assert await fetchval(settings.database_url, "SELECT count(*) FROM ledger.entries WHERE reference LIKE $1",
                          f"{window_id}:%") == 0
    assert await fetchval(settings.database_url, "SELECT count(*) FROM ledger.trades WHERE window_id = $1",
                          str(window_id)) == 0
