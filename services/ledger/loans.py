"""The ledger's margin loans: draws, repayments and interest charges, booked balanced, and the
check that a withdrawal does not leave the loan above its share of the account's value.

Books (docs/services/ledger.md, "Loans"):
- ``customer:<account>:loan`` (USD): what the account owes, as a negative balance. A draw
  is ``loan -X / cash +X``; a repayment ``cash -X / loan +X``.
- ``firm:margin-interest`` (USD): the firm's interest income. A charge is
  ``cash -I / firm:margin-interest +I`` (the cash may go negative; the pie sells to cover it).

Entry kinds ``loan``, ``loan_repayment`` and ``loan_interest``, each once per reference (the
loan, repayment or charge id). The margin service decides a borrow (it knows prices and
requirements) and sends ``ledger.loan.draw``; ``ledger.loan.repay`` comes from the holder
(``m1 margin repay``) or from the margin service after a liquidation's sells.
"""

from __future__ import annotations

from decimal import Decimal

import asyncpg

from services.ledger import domain, store
from shared import topology
from shared.contracts import CashChanged, ChargeLoanInterest, DrawLoan, LoanChanged, RepayLoan
from shared.messaging import Rejected, Tx
from shared.money import cents_down
from shared.service import Service

INTEREST_BOOK = "firm:margin-interest"
ZERO = Decimal("0.00")


def loan_book(account_id: str) -> str:
    return f"customer:{account_id}:loan"


def draw_postings(account_id: str, amount: Decimal) -> list[domain.Posting]:
    return [domain.Posting(loan_book(account_id), domain.USD, -amount),
            domain.Posting(domain.cash_book(account_id), domain.USD, amount)]


def repay_postings(account_id: str, amount: Decimal) -> list[domain.Posting]:
    return [domain.Posting(domain.cash_book(account_id), domain.USD, -amount),
            domain.Posting(loan_book(account_id), domain.USD, amount)]


def interest_postings(account_id: str, amount: Decimal) -> list[domain.Posting]:
    return [domain.Posting(domain.cash_book(account_id), domain.USD, -amount),
            domain.Posting(INTEREST_BOOK, domain.USD, amount)]


def repayment(amount: Decimal, cash: Decimal, owed: Decimal, up_to: bool, held: Decimal = ZERO) -> Decimal:
    """What a repayment takes: all of ``amount`` (refused when the free cash or the loan is
    smaller), or with ``up_to`` as much of it as the free cash and the loan allow. The free
    cash is ``cash`` less what is ``held``: withdrawals waiting for it and cash held for
    trade windows not booked yet, which count as spent already."""
    free = cash - held
    if up_to:
        return max(min(amount, free, owed), ZERO)
    if owed <= 0:
        raise domain.Refusal("the account has no margin loan to repay")
    if amount > owed:
        raise domain.Refusal(f"repayment of {amount} exceeds the loan of {owed}")
    if amount > free:
        raise domain.Refusal(f"insufficient cash to repay: requested {amount}, cash {cash}"
                             + (f" of which {held} is held for withdrawals and trade windows" if held else ""))
    return amount


def withdrawal_refusal(amount: Decimal, cash: Decimal, market_value: Decimal, owed: Decimal,
                       max_share: Decimal, held: Decimal = ZERO) -> str | None:
    """A withdrawal must not leave the loan above ``max_share`` of the account's value
    (market value + cash) after it and after the withdrawals already ``held`` (waiting for
    sells or settlement: they count as gone)."""
    if owed <= 0:
        return None
    value_after = market_value + cash - held - amount
    if owed > max_share * value_after:
        allowed = max(cents_down(market_value + cash - held - owed / max_share), ZERO)
        return (f"it would leave the margin loan of {owed} above {format((max_share * 100).normalize(), 'f')}% "
                f"of the account's value; at most {allowed} can be withdrawn")
    return None


# ---------------------------------------------------------------- SQL


async def owed(conn: asyncpg.Connection, account_id: str) -> Decimal:
    value = await conn.fetchval("SELECT amount FROM balances WHERE book = $1 AND asset = $2",
                                loan_book(account_id), domain.USD)
    return (-(value or Decimal("0"))).quantize(domain.CENT)


async def market_value(conn: asyncpg.Connection, account_id: str) -> Decimal:
    """The account's holdings at the last price the ledger recorded for each."""
    value = await conn.fetchval(
        """SELECT coalesce(sum(b.amount * p.price), 0) FROM balances b
           JOIN LATERAL (SELECT price FROM prices WHERE symbol = b.asset ORDER BY as_of DESC LIMIT 1) p ON true
           WHERE b.book = $1 AND b.amount <> 0""",
        domain.securities_book(account_id))
    return Decimal(value)


# ---------------------------------------------------------------- handlers


async def check_withdrawal(tx: Tx, account_id: str, amount: Decimal, max_share: Decimal) -> None:
    """Refuse (Rejected) a withdrawal that would push the loan above ``max_share`` of the
    account's value, the withdrawals already held counted as gone. Called first by the
    withdrawal handler; it locks the account, so the loan, cash and held withdrawals it reads
    are those the booking (or the hold) then sees."""
    if await store.get_account(tx.conn, account_id, lock=True) is None:
        return  # the withdrawal handler refuses an unknown account
    loan = await owed(tx.conn, account_id)
    if loan <= 0:
        return
    cash = await store.cash_of(tx.conn, account_id)
    held = await store.held_withdrawals(tx.conn, account_id)
    if reason := withdrawal_refusal(amount, cash, await market_value(tx.conn, account_id), loan, max_share, held):
        raise Rejected(reason)


def register(service: Service) -> None:
    on = service.handler

    async def book(tx: Tx, kind: str, reference: str, account_id: str, postings) -> tuple[int, Decimal] | None:
        """Book one account's entry; the new version and cash, or None when booked before."""
        version = await store.bump_version(tx.conn, account_id)
        booked = await store.book_entry(tx.conn, kind=kind, reference=reference, account_id=account_id,
                                        correlation_id=tx.correlation_id, booked_at=tx.now, postings=postings)
        if booked is None:
            return None
        cash = booked[1].get((domain.cash_book(account_id), domain.USD))
        return version, (cash if cash is not None else await store.cash_of(tx.conn, account_id)).quantize(domain.CENT)

    @on(topology.LEDGER_COMMANDS, DrawLoan)
    async def draw_loan(tx: Tx, cmd: DrawLoan) -> LoanChanged | None:
        if await store.get_account(tx.conn, cmd.account_id, lock=True) is None:
            raise Rejected(f"unknown account {cmd.account_id}")
        booked = await book(tx, "loan", str(cmd.loan_id), cmd.account_id, draw_postings(cmd.account_id, cmd.amount))
        if booked is None:
            return None  # booked before under another message id
        version, cash = booked
        event = LoanChanged(account_id=cmd.account_id, loan=await owed(tx.conn, cmd.account_id), delta=cmd.amount,
                            cash=cash, cause="loan", cause_id=str(cmd.loan_id), version=version, booked_at=tx.now)
        tx.emit(CashChanged(account_id=cmd.account_id, cash=cash, delta=cmd.amount, cause="loan",
                            cause_id=str(cmd.loan_id), version=version))
        tx.emit(event)
        return event

    @on(topology.LEDGER_COMMANDS, RepayLoan)
    async def repay_loan(tx: Tx, cmd: RepayLoan) -> LoanChanged | None:
        if await store.get_account(tx.conn, cmd.account_id, lock=True) is None:
            raise Rejected(f"unknown account {cmd.account_id}")
        # Cash held for a window's buys or promised to a held withdrawal counts as spent (as
        # for a withdrawal): a repayment takes only the cash beyond it.
        held = (await store.held_withdrawals(tx.conn, cmd.account_id)
                + await store.cash_held_for_windows(tx.conn, cmd.account_id))
        try:
            amount = repayment(cmd.amount, await store.cash_of(tx.conn, cmd.account_id),
                               await owed(tx.conn, cmd.account_id), cmd.up_to, held)
        except domain.Refusal as exc:
            raise Rejected(str(exc)) from exc
        if amount <= 0:
            return None  # up_to with no cash or no loan: nothing to repay
        booked = await book(tx, "loan_repayment", str(cmd.repayment_id), cmd.account_id,
                            repay_postings(cmd.account_id, amount))
        if booked is None:
            return None
        version, cash = booked
        event = LoanChanged(account_id=cmd.account_id, loan=await owed(tx.conn, cmd.account_id), delta=-amount,
                            cash=cash, cause="repayment", cause_id=str(cmd.repayment_id), version=version,
                            booked_at=tx.now)
        tx.emit(CashChanged(account_id=cmd.account_id, cash=cash, delta=-amount, cause="repayment",
                            cause_id=str(cmd.repayment_id), version=version))
        tx.emit(event)
        return event

    @on(topology.LEDGER_COMMANDS, ChargeLoanInterest)
    async def charge_interest(tx: Tx, cmd: ChargeLoanInterest) -> None:
        if await store.get_account(tx.conn, cmd.account_id, lock=True) is None:
            raise Rejected(f"unknown account {cmd.account_id}")
        booked = await book(tx, "loan_interest", str(cmd.charge_id), cmd.account_id,
                            interest_postings(cmd.account_id, cmd.amount))
        if booked is not None:
            version, cash = booked
            tx.emit(CashChanged(account_id=cmd.account_id, cash=cash, delta=-cmd.amount, cause="interest",
                                cause_id=str(cmd.charge_id), version=version))
