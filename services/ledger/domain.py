"""Ledger rules: how each business event becomes a balanced journal entry. Pure; no I/O."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal

from shared.contracts import Execution, Fill, Residue, Side

USD = "USD"
CENT = Decimal("0.01")
BANK = "firm:bank"
STREET = "firm:street"
RESIDUE = "firm:residue"


def cash_book(account_id: str) -> str:
    return f"customer:{account_id}:cash"


def securities_book(account_id: str) -> str:
    return f"customer:{account_id}:securities"


@dataclass(frozen=True)
class Posting:
    """A change of ``amount`` in what ``book`` holds of ``asset`` (USD or a ticker)."""

    book: str
    asset: str
    amount: Decimal


class Refusal(Exception):
    """A business event the ledger will not book, with the reason."""


class UnbalancedEntry(Refusal):
    pass


def check_balanced(postings: Iterable[Posting]) -> None:
    """Every asset's postings in one entry must sum to exactly zero."""
    totals: dict[str, Decimal] = defaultdict(Decimal)
    for p in postings:
        totals[p.asset] += p.amount
    off = {asset: total for asset, total in totals.items() if total != 0}
    if off:
        raise UnbalancedEntry("entry does not balance: " + ", ".join(f"{a} off by {t}" for a, t in sorted(off.items())))


def _nonzero(postings: Iterable[Posting]) -> list[Posting]:
    return [p for p in postings if p.amount != 0]


def deposit(account_id: str, amount: Decimal) -> list[Posting]:
    """Money arrives from the bank into the customer's cash."""
    return [Posting(BANK, USD, -amount), Posting(cash_book(account_id), USD, amount)]


def withdrawal(account_id: str, amount: Decimal, cash: Decimal) -> list[Posting]:
    """Money leaves the customer's cash for the bank: the account must hold the whole amount
    (a larger withdrawal is held while the pie service sells; see handlers.hold_if_short)."""
    if amount > cash:
        raise Refusal(f"insufficient cash: requested {amount}, available {cash}")
    return [Posting(cash_book(account_id), USD, -amount), Posting(BANK, USD, amount)]


def fills(executions: Sequence[Execution], allocations: Sequence[Fill], residues: Sequence[Residue]) -> list[Posting]:
    """One window's executions, their allocation to accounts and the firm's residue.

    The street delivers the executed shares against the executed amount; each buyer pays its
    amount and receives its quantity (a seller the opposite); the residue books whatever the
    exact allocation left over, so every asset sums to zero.
    """
    postings = _nonzero(_window_legs(executions, allocations, residues))
    check_balanced(postings)
    return postings


def clearing_book(window_id: object) -> str:
    return f"firm:clearing:{window_id}"


def fills_batch(window_id: object, executions: Sequence[Execution], allocations: Sequence[Fill],
                residues: Sequence[Residue]) -> list[Posting]:
    """One batch of a window's fills (``window.fills.batch``): the batch's customer legs, the
    street and residue legs when the batch carries them (batch 0), and per asset a leg to the
    window's clearing book that makes this entry balance. Over all batches of a window the
    clearing book sums to zero exactly when the window's allocation balances."""
    legs = _window_legs(executions, allocations, residues)
    totals: dict[str, Decimal] = defaultdict(Decimal)
    for p in legs:
        totals[p.asset] += p.amount
    postings = _nonzero(legs + [Posting(clearing_book(window_id), a, -t) for a, t in sorted(totals.items())])
    check_balanced(postings)
    return postings


def _window_legs(executions: Sequence[Execution], allocations: Sequence[Fill],
                 residues: Sequence[Residue]) -> list[Posting]:
    postings: list[Posting] = []
    for e in executions:
        sign = 1 if e.side is Side.BUY else -1
        postings += [Posting(STREET, USD, sign * e.amount), Posting(STREET, e.symbol, -sign * e.quantity)]
    for f in allocations:
        sign = 1 if f.side is Side.BUY else -1
        postings += [
            Posting(cash_book(f.account_id), USD, -sign * f.amount),
            Posting(securities_book(f.account_id), f.symbol, sign * f.quantity),
        ]
    for r in residues:
        postings += [Posting(RESIDUE, USD, r.amount), Posting(RESIDUE, r.symbol, r.quantity)]
    return postings
