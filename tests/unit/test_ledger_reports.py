"""Statement arithmetic, the beancount export and the audit's rules (services/ledger/reports.py)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from services.ledger import domain, reports
from services.ledger.domain import Posting
from services.ledger.reports import Entry, account_name, average_cost, beancount, commodity
from tests.support_ledger import beancount_errors

D = Decimal
COMPONENT = re.compile(r"^[A-Z0-9][A-Za-z0-9-]*$")

account_ids = st.from_regex(r"^[A-Za-z0-9_-]{1,12}$", fullmatch=True)
symbols = st.from_regex(r"^[A-Z][A-Z0-9.]{0,5}$", fullmatch=True)


@given(account_ids, account_ids)
def test_customer_books_map_to_valid_distinct_beancount_accounts(a, b):
    name = account_name(domain.cash_book(a))
    assert name.startswith("Assets:Customers:") and all(COMPONENT.match(c) for c in name.split(":"))
    assert (name == account_name(domain.cash_book(b))) == (a == b)


@given(symbols, symbols)
def test_tickers_map_to_distinct_commodities(a, b):
    assert re.fullmatch(r"[A-Z]([A-Z0-9'._-]*[A-Z0-9])?", commodity(a))
    assert (commodity(a) == commodity(b)) == (a == b)


def test_book_names():
    assert account_name("customer:alice:cash") == "Assets:Customers:Alice:Cash"
    assert account_name("customer:Alice:securities") == "Assets:Customers:Id-Alice:Securities"
    assert account_name("customer:a_b:cash") == "Assets:Customers:Id-a-5Fb:Cash"
    assert account_name("firm:bank") == "Equity:Bank"
    assert account_name("firm:residue") == "Assets:Firm:Residue"
    assert account_name("firm:clearing:0b7e3f0c-1d2e-4f00-8a00-000000000001") == \
        "Assets:Firm:Clearing:U0b7e3f0c1d2e4f008a00000000000001"


def test_average_cost_removes_the_sold_fraction_and_everything_on_a_close():
    costs = average_cost([("buy", "VTI", D("2"), D("500.00")), ("buy", "VTI", D("1"), D("301.00")),
                          ("sell", "VTI", D("1"), D("280.00")), ("buy", "BND", D("3"), D("10.00")),
                          ("sell", "BND", D("3"), D("11.00"))])
    assert set(costs) == {"VTI"}
    assert (costs["VTI"].quantity, costs["VTI"].cost) == (D("2"), D("534.00"))  # 801 - 801/3


def _entry(n: int, kind: str, day: int, *postings: Posting) -> Entry:
    return Entry(n, kind, f"ref-{n}", datetime(2026, 11, day, 15, tzinfo=UTC), tuple(postings))


def test_the_export_of_a_small_journal_is_what_an_accountant_expects_and_passes_the_checker():
    entries = [
        _entry(1, "deposit", 2, Posting("firm:bank", "USD", D("-100.00")), Posting("customer:alice:cash", "USD",
                                                                                  D("100.00"))),
        _entry(2, "fill", 3, Posting("firm:street", "USD", D("33.33")), Posting("firm:street", "VTI", D("-0.12346")),
               Posting("customer:alice:cash", "USD", D("-33.33")),
               Posting("customer:alice:securities", "VTI", D("0.12345")),
               Posting("firm:residue", "VTI", D("0.00001"))),
    ]
    text = beancount(entries)
    assert beancount_errors(text) == []
    assert '2026-11-03 * "fill" "ref-2"' in text
    assert "  Assets:Customers:Alice:Securities  0.12345 VTI" in text
    for line in ("2026-11-04 balance Assets:Customers:Alice:Cash  66.67 USD",
                 "2026-11-04 balance Equity:Bank  -100.00 USD",  # negative: money in from outside
                 "2026-11-04 balance Assets:Firm:Residue  0.00001 VTI",
                 "2026-11-04 balance Equity:Street  -0.12346 VTI"):
        assert line in text


def test_the_checker_catches_a_wrong_balance_assertion():
    text = beancount([_entry(1, "deposit", 2, Posting("firm:bank", "USD", D("-5.00")),
                             Posting("customer:bob:cash", "USD", D("5.00")))])
    assert beancount_errors(text) == []
    assert beancount_errors(text.replace("Bob:Cash  5.00 USD", "Bob:Cash  5.01 USD"))


@st.composite
def journals(draw):
    accounts = draw(st.lists(account_ids, min_size=1, max_size=4, unique=True))
    tickers = draw(st.lists(symbols, min_size=1, max_size=3, unique=True))
    entries = []
    start = datetime(2026, 1, 1, 15, tzinfo=UTC)
    for n in range(draw(st.integers(1, 12))):
        a = draw(st.sampled_from(accounts))
        cash = draw(st.decimals(D("-500"), D("500"), places=2).filter(lambda x: x != 0))
        qty = draw(st.decimals(D("-5"), D("5"), places=5).filter(lambda x: x != 0))
        sym = draw(st.sampled_from(tickers))
        when = start + timedelta(days=draw(st.integers(0, 400)), hours=draw(st.integers(0, 12)))
        entries.append(Entry(n + 1, draw(st.sampled_from(["deposit", "fill", "fee"])), f"r{n}", when, (
            Posting("firm:bank", "USD", -cash), Posting(domain.cash_book(a), "USD", cash),
            Posting("firm:street", sym, -qty), Posting(domain.securities_book(a), sym, qty))))
    return sorted(entries, key=lambda e: (e.booked_at, e.entry_id))


@settings(max_examples=40, deadline=None)
@given(journals())
def test_any_balanced_journal_exports_to_a_file_the_checker_accepts(entries):
    assert beancount_errors(beancount(entries)) == []


def test_the_audit_reports_a_stored_balance_that_differs_from_the_postings():
    recomputed = {("customer:a:cash", "USD"): D("10.00"), ("firm:bank", "USD"): D("-10.00")}
    assert reports.balance_differences(recomputed, {("customer:a:cash", "USD"): D("10.00")}) == []
    assert reports.balance_differences(recomputed, {("customer:a:cash", "USD"): D("10.01")}) == [
        "balance customer:a:cash USD: table says 10.01, postings sum to 10.00"]
    assert reports.balance_differences(recomputed, {}) == [
        "balance customer:a:cash USD: table says 0, postings sum to 10.00"]


def test_the_audit_reconciles_cash_and_positions_with_their_sources():
    balances = {("customer:a:cash", "USD"): D("62.00"), ("customer:a:securities", "VTI"): D("0.2")}
    funding = {"a": (D("100.00"), D("10.00"))}
    trades = {"a": (D("-25.00"), {"VTI": D("0.2")})}
    assert reports.reconcile_accounts(balances, funding, trades, {"a": D("-3.00")}, {}, ["a"]) == []
    off = reports.reconcile_accounts(balances, funding, trades, {}, {}, ["a"])
    assert off == ["account a: cash 62.00 but deposits 100.00 - withdrawals 10.00 + trades -25.00 "
                   "+ other entries 0 = 65.00"]
    short = reports.reconcile_accounts({**balances, ("customer:a:securities", "BND"): D("-1")}, funding, trades,
                                       {"a": D("-3.00")}, {}, ["a"])
    assert "account a: negative position -1 BND" in short


def test_entries_of_unknown_kinds_are_reported():
    assert reports.unknown_kinds({"deposit": 3, "fill": 1}) == []
    assert reports.unknown_kinds({"deposit": 3, "bonus": 2}) == ["2 entries of unknown kind 'bonus'"]
