"""Ledger rules: every business event becomes one balanced entry."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.ledger import domain
from shared.contracts import Execution, Fill, Residue


def test_a_deposit_moves_money_from_the_bank_to_the_customers_cash():
    postings = domain.deposit("alice", Decimal("100.00"))
    assert domain.Posting("customer:alice:cash", "USD", Decimal("100.00")) in postings
    domain.check_balanced(postings)


def test_a_withdrawal_beyond_cash_is_refused_with_both_figures():
    with pytest.raises(domain.Refusal, match="requested 50.01, available 50.00"):
        domain.withdrawal("alice", Decimal("50.01"), Decimal("50.00"))


def test_a_withdrawal_of_all_cash_balances():
    domain.check_balanced(domain.withdrawal("alice", Decimal("50.00"), Decimal("50.00")))


def test_an_unbalanced_entry_is_refused_naming_the_asset():
    with pytest.raises(domain.UnbalancedEntry, match="USD off by 0.01"):
        domain.check_balanced([domain.Posting("a", "USD", Decimal("1.00")), domain.Posting("b", "USD", Decimal("-0.99"))])


def fill(account, side, qty, amount, symbol="VTI", price="250.00"):
    return Fill(intent_id=uuid.uuid4(), account_id=account, symbol=symbol, side=side, quantity=qty, amount=amount,
                price=price)


def test_a_window_with_a_crossed_buy_and_sell_balances_through_the_street_and_the_residue():
    executions = [Execution(symbol="VTI", side="buy", quantity="0.40000", price="250.00", amount="100.00")]
    fills = [fill("a", "buy", "0.80000", "200.00"), fill("b", "sell", "0.40000", "100.00")]
    postings = domain.fills(executions, fills, [])
    by = {(p.book, p.asset): p.amount for p in postings}
    assert by[("customer:a:securities", "VTI")] == Decimal("0.80000")
    assert by[("customer:b:cash", "USD")] == Decimal("100.00")


def test_fills_that_do_not_add_up_are_refused():
    executions = [Execution(symbol="VTI", side="buy", quantity="1.00000", price="100.00", amount="100.00")]
    with pytest.raises(domain.UnbalancedEntry):
        domain.fills(executions, [fill("a", "buy", "1.00000", "99.00", price="100.00")], [])


@given(st.lists(st.decimals(min_value=Decimal("1.00"), max_value=Decimal("5000.00"), places=2), min_size=1, max_size=20),
       st.decimals(min_value=Decimal("1.00"), max_value=Decimal("900.00"), places=2))
def test_buys_at_one_price_balance_once_the_residue_takes_the_rounding(amounts, price):
    qtys = [(a / price).quantize(Decimal("0.00001"), rounding="ROUND_DOWN") for a in amounts]
    total = sum(amounts)
    street_q = (total / price).quantize(Decimal("0.00001"), rounding="ROUND_DOWN")
    street_amount = (street_q * price).quantize(Decimal("0.01"))
    executions = [Execution(symbol="VTI", side="buy", quantity=street_q, price=price, amount=street_amount)]
    fills = [fill(f"a{i}", "buy", q, a, price=price) for i, (a, q) in enumerate(zip(amounts, qtys, strict=True))]
    residue = Residue(symbol="VTI", quantity=street_q - sum(qtys), amount=total - street_amount)
    domain.check_balanced(domain.fills(executions, fills, [residue]))
