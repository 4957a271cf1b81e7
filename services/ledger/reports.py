"""Statements, the beancount export and the audit's rules. Pure; the SQL is in reports_store.

- ``statement``: an account's month from its postings and trades.
- ``beancount``: the whole journal as a beancount file; every ledger book is a beancount
  account, every entry a transaction, tickers are commodities, and the file ends with a
  balance assertion for every account and asset it ever held.
- ``audit_*``: the reconciliations ``m1 ledger audit`` reports on.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal

from services.ledger import domain
from services.ledger.settlement import local_date
from shared.money import cents

ZERO = Decimal("0")
CASH_PLACES = Decimal("0.01")
SHARE_PLACES = Decimal("0.00001")

# Entry kinds the audit knows how to reconcile (the ledger's own, and those its rules add;
# domain.ENTRY_KINDS, when the domain declares it, is the authority). Anything else is
# reported as unknown.
KNOWN_KINDS = frozenset({"deposit", "withdrawal", "fill", "dividend", "fee", "interest", "loan", "loan_repayment",
                         "loan_interest", "adjustment"}) | frozenset(getattr(domain, "ENTRY_KINDS", ()))


@dataclass(frozen=True)
class Entry:
    entry_id: int
    kind: str
    reference: str
    booked_at: datetime
    postings: tuple[domain.Posting, ...] = field(default=())


# ---------------------------------------------------------------- month statement


def month_bounds(month: str, tz) -> tuple[datetime, datetime]:
    """``YYYY-MM`` as [first instant, first instant of the next month) in ``tz``."""
    year, mon = (int(x) for x in month.split("-"))
    start = datetime(year, mon, 1, tzinfo=tz)
    end = datetime(year + (mon == 12), mon % 12 + 1, 1, tzinfo=tz)
    return start, end


@dataclass
class Holding:
    quantity: Decimal = ZERO
    cost: Decimal = ZERO


def average_cost(trades: Iterable[tuple[str, str, Decimal, Decimal]]) -> dict[str, Holding]:
    """Quantity and cost per symbol from the trades (side, symbol, quantity, amount) in
    booking order, by average cost: a buy adds its amount; a sale removes the sold fraction
    of the cost (to the cent), all of it when the position is closed."""
    out: dict[str, Holding] = defaultdict(Holding)
    for side, symbol, quantity, amount in trades:
        h = out[symbol]
        if side == "buy":
            h.quantity += quantity
            h.cost += amount
        else:
            if quantity >= h.quantity or h.quantity == 0:
                h.quantity, h.cost = max(h.quantity - quantity, ZERO), ZERO
            else:
                h.cost -= cents(h.cost * quantity / h.quantity)
                h.quantity -= quantity
    return {s: h for s, h in out.items() if h.quantity != 0}


def movements(entries: Sequence[Entry], cash: str, securities: str) -> list[dict]:
    """One line per entry touching the account: its date, kind, reference, cash change and
    share changes per symbol."""
    lines = []
    for e in entries:
        cash_delta = sum((p.amount for p in e.postings if p.book == cash), ZERO)
        shares: dict[str, Decimal] = defaultdict(Decimal)
        for p in e.postings:
            if p.book == securities:
                shares[p.asset] += p.amount
        if cash_delta == 0 and not any(shares.values()):
            continue
        lines.append({"date": local_date(e.booked_at).isoformat(), "booked_at": e.booked_at.isoformat(),
                      "kind": e.kind, "reference": e.reference,
                      "cash": format(cash_delta.quantize(CASH_PLACES), "f"),
                      "shares": {s: format(q.quantize(SHARE_PLACES), "f") for s, q in sorted(shares.items()) if q}})
    return lines


def balances_view(cash: Decimal, positions: Mapping[str, Decimal]) -> dict:
    return {"cash": format(cash.quantize(CASH_PLACES), "f"),
            "positions": {s: format(q.quantize(SHARE_PLACES), "f") for s, q in sorted(positions.items()) if q}}


def holdings_view(positions: Mapping[str, Decimal], costs: Mapping[str, Holding],
                  prices: Mapping[str, tuple[Decimal, datetime]]) -> list[dict]:
    """Per symbol held: quantity, cost (average cost of the fills), the last price known at
    the statement's end and the market value (quantity x price, to the cent)."""
    rows = []
    for symbol, quantity in sorted(positions.items()):
        if not quantity:
            continue
        price = prices.get(symbol)
        cost = costs.get(symbol)
        rows.append({
            "symbol": symbol,
            "quantity": format(quantity.quantize(SHARE_PLACES), "f"),
            "cost": format(cost.cost.quantize(CASH_PLACES), "f") if cost is not None else None,
            "price": format(price[0], "f") if price else None,
            "price_as_of": price[1].isoformat() if price else None,
            "market_value": format(cents(quantity * price[0]), "f") if price else None,
        })
    return rows


# ---------------------------------------------------------------- beancount


_SIMPLE = re.compile(r"^[a-z][a-z0-9]*$")
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def _component(text: str) -> str:
    """One ledger book name part as a valid beancount account component, one to one: a
    lower-case word is capitalised (``alice`` → ``Alice``); a UUID becomes ``U`` + its hex;
    anything else is ``Id-`` + the text with every character but letters and digits written
    as ``-XX`` (its code in hex), so ``Alice`` → ``Id-Alice`` and ``a_b`` → ``Id-a-5Fb``."""
    if _SIMPLE.match(text):
        return text.capitalize()
    if _UUID.match(text):
        return "U" + text.replace("-", "")
    return "Id-" + "".join(c if c.isascii() and c.isalnum() else f"-{ord(c):02X}" for c in text)


def account_name(book: str) -> str:
    """A ledger book as a beancount account. Customer books are the customer's assets
    (``Assets:Customers:Alice:Cash``); the bank and the street are the firm's counterparties
    (``Equity:Bank``, ``Equity:Street``: what came in from outside is negative there); the
    firm's own books are ``Assets:Firm:...`` (``firm:residue`` → ``Assets:Firm:Residue``,
    a window's clearing book ``Assets:Firm:Clearing:U<hex>``). Balances may be negative on
    any of them: the postings keep the ledger's sign (what the book holds)."""
    parts = book.split(":")
    if parts[0] == "customer" and len(parts) >= 3:
        return ":".join(["Assets:Customers", _component(parts[1]), *(_component(p) for p in parts[2:])])
    if parts[0] == "firm" and len(parts) == 2 and parts[1] in ("bank", "street"):
        return "Equity:" + _component(parts[1])
    if parts[0] == "firm" and len(parts) >= 2:
        return ":".join(["Assets:Firm", *(_component(p) for p in parts[1:])])
    return ":".join(["Equity:Other", *(_component(p) for p in parts)])


def commodity(asset: str) -> str:
    """A ticker as a beancount commodity. Tickers are ``[A-Z][A-Z0-9.]*``; beancount wants
    the last character a letter or digit, so a ticker ending in ``.`` gets ``-D`` appended
    (no ticker contains ``-``, so this stays one to one)."""
    return asset if asset[-1].isalnum() else asset + "-D"


def _number(asset: str, amount: Decimal) -> str:
    places = CASH_PLACES if asset == domain.USD and amount == amount.quantize(CASH_PLACES) else SHARE_PLACES
    return format(amount.quantize(places), "f")


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def beancount(entries: Iterable[Entry], *, title: str = "m1 ledger") -> str:
    """The journal as a beancount file: options, an ``open`` per account (on the date of its
    first posting), one transaction per entry (date in New York; the entry id, kind,
    reference and book names as metadata), then a ``balance`` assertion for every account
    and every asset it ever held, dated the day after the last entry (beancount checks a
    balance at the start of its date). Entries must come in booking order."""
    opened: dict[str, date] = {}
    books: dict[str, str] = {}
    totals: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    body: list[str] = []
    last = None
    for e in entries:
        day = local_date(e.booked_at)
        last = day if last is None or day > last else last
        body.append(f"{day.isoformat()} * {_quote(e.kind)} {_quote(e.reference)}")
        body.append(f"  entry_id: {_quote(str(e.entry_id))}")
        body.append(f"  booked_at: {_quote(e.booked_at.isoformat())}")
        for p in e.postings:
            account = account_name(p.book)
            books.setdefault(account, p.book)
            opened.setdefault(account, day)
            totals[(account, p.asset)] += p.amount
            body.append(f"  {account}  {_number(p.asset, p.amount)} {commodity(p.asset)}")
        body.append("")
    out = [f"option \"title\" {_quote(title)}", 'option "operating_currency" "USD"', ""]
    for account, day in sorted(opened.items(), key=lambda kv: (kv[1], kv[0])):
        out.append(f"{day.isoformat()} open {account}")
        out.append(f"  book: {_quote(books[account])}")
    out.append("")
    out += body
    if last is not None:
        check = (last + timedelta(days=1)).isoformat()
        for (account, asset), amount in sorted(totals.items()):
            out.append(f"{check} balance {account}  {_number(asset, amount)} {commodity(asset)}")
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------- audit


def balance_differences(recomputed: Mapping[tuple[str, str], Decimal],
                        stored: Mapping[tuple[str, str], Decimal]) -> list[str]:
    """The running ``balances`` rows against the sums of the postings, for customer books
    (firm books have no running row)."""
    out = []
    for key in sorted(set(recomputed) | set(stored)):
        if key[0].startswith("firm:"):
            continue
        want, have = recomputed.get(key, ZERO), stored.get(key, ZERO)
        if want != have:
            out.append(f"balance {key[0]} {key[1]}: table says {have}, postings sum to {want}")
    return out


def reconcile_accounts(balances: Mapping[tuple[str, str], Decimal],
                       funding: Mapping[str, tuple[Decimal, Decimal]],
                       trades: Mapping[str, tuple[Decimal, dict[str, Decimal]]],
                       other_cash: Mapping[str, Decimal],
                       other_shares: Mapping[str, dict[str, Decimal]],
                       accounts: Iterable[str]) -> list[str]:
    """Each customer's cash and positions against their sources: cash = deposits −
    withdrawals (the ``funding`` records) + sales − purchases (the ``trades`` records) + the
    cash postings of every other kind of entry (dividends, fees, interest, loans...);
    positions = shares bought − sold (+ shares other entries moved). No customer may hold a
    negative quantity of a security."""
    out = []
    for account in sorted(accounts):
        deposits, withdrawals = funding.get(account, (ZERO, ZERO))
        trade_cash, trade_shares = trades.get(account, (ZERO, {}))
        expected_cash = deposits - withdrawals + trade_cash + other_cash.get(account, ZERO)
        cash = balances.get((domain.cash_book(account), domain.USD), ZERO)
        if cash != expected_cash:
            out.append(f"account {account}: cash {cash} but deposits {deposits} - withdrawals {withdrawals} "
                       f"+ trades {trade_cash} + other entries {other_cash.get(account, ZERO)} = {expected_cash}")
        expected: dict[str, Decimal] = defaultdict(Decimal, trade_shares)
        for symbol, q in other_shares.get(account, {}).items():
            expected[symbol] += q
        book = domain.securities_book(account)
        held = {asset: q for (b, asset), q in balances.items() if b == book}
        for symbol in sorted(set(expected) | set(held)):
            if held.get(symbol, ZERO) != expected.get(symbol, ZERO):
                out.append(f"account {account}: {held.get(symbol, ZERO)} {symbol} held but trades and other "
                           f"entries give {expected.get(symbol, ZERO)}")
            if held.get(symbol, ZERO) < 0:
                out.append(f"account {account}: negative position {held[symbol]} {symbol}")
    return out


def unknown_kinds(kinds: Mapping[str, int]) -> list[str]:
    return [f"{n} entries of unknown kind {k!r}" for k, n in sorted(kinds.items()) if k not in KNOWN_KINDS]
