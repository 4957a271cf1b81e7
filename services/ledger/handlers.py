"""Ledger subscribers: parse the contract, book in one transaction, emit what changed."""

from __future__ import annotations

from collections import defaultdict

from services.ledger import domain, store
from shared import topology
from shared.contracts import (
    AccountBalances,
    AccountOpened,
    CashChanged,
    DepositBooked,
    DepositReceived,
    FillsAllocated,
    FillsBooked,
    FundingRejected,
    GetAccount,
    OpenAccount,
    PositionChanged,
    WithdrawalBooked,
    WithdrawalRequested,
)
from shared.messaging import Rejected, Tx
from shared.service import Service


def register(service: Service) -> None:
    on = service.handler

    async def notify_funding_rejected(tx: Tx, raw: dict | None, reason: str) -> None:
        """Tell the holder of a known account that a funding event was refused."""
        account_id = (raw or {}).get("account_id")
        if not isinstance(account_id, str) or await store.get_account(tx.conn, account_id) is None:
            return
        kind = tx.routing_key.rsplit(".", 2)[-2] if tx.routing_key.startswith("funding.") else "funding"
        funding_id = (raw or {}).get("deposit_id") or (raw or {}).get("withdrawal_id")
        amount = (raw or {}).get("amount")
        tx.emit(FundingRejected(account_id=account_id, funding_type=kind,
                                funding_id=str(funding_id)[:64] if funding_id is not None else None,
                                amount=str(amount)[:32] if amount is not None else None, reason=reason))

    @on(topology.LEDGER_COMMANDS, OpenAccount)
    async def open_account(tx: Tx, cmd: OpenAccount) -> AccountOpened:
        if not await store.insert_account(tx.conn, cmd.account_id, cmd.kind, cmd.plan, tx.now):
            existing = await store.get_account(tx.conn, cmd.account_id)
            if (existing["kind"], existing["plan"]) != (cmd.kind.value, cmd.plan.value):
                raise Rejected(f"account {cmd.account_id} already exists as {existing['kind']}/{existing['plan']}")
            return AccountOpened(account_id=cmd.account_id, kind=existing["kind"], plan=existing["plan"],
                                 opened_at=existing["opened_at"])
        event = AccountOpened(account_id=cmd.account_id, kind=cmd.kind, plan=cmd.plan, opened_at=tx.now)
        tx.emit(event)
        return event

    @on(topology.LEDGER_COMMANDS, GetAccount, idempotent=False)
    async def get_account(tx: Tx, query: GetAccount) -> AccountBalances:
        account = await store.get_account(tx.conn, query.account_id)
        if account is None:
            raise Rejected(f"unknown account {query.account_id}")
        cash = await store.cash_of(tx.conn, query.account_id)
        positions = (await store.positions_of_many(tx.conn, [query.account_id]))[query.account_id]
        return AccountBalances(account_id=query.account_id, kind=account["kind"], plan=account["plan"], cash=cash,
                               positions=positions, version=account["version"])

    async def book_funding(tx: Tx, kind: str, funding_id, account_id: str, amount, postings_for) -> tuple[int, object]:
        """Shared steps of a deposit and a withdrawal: checks, entry, funding row. Returns the
        account's new version and cash."""
        if tx.message_id != str(funding_id):
            raise Rejected(f"message_id {tx.message_id!r} must equal the {kind} id {funding_id}")
        version = await store.bump_version(tx.conn, account_id)  # also locks the account
        if version is None:
            raise Rejected(f"unknown account {account_id}")
        try:
            postings = await postings_for()
        except domain.Refusal as exc:
            raise Rejected(str(exc)) from exc
        booked = await store.book_entry(tx.conn, kind=kind, reference=str(funding_id), account_id=account_id,
                                        correlation_id=tx.correlation_id, booked_at=tx.now, postings=postings)
        if booked is None:
            previous = await store.find_funding(tx.conn, funding_id)
            raise Rejected(f"{kind} {funding_id} was already booked as a {previous['kind']} of "
                           f"{previous['amount']} for {previous['account_id']}")
        entry_id, moved = booked
        await store.insert_funding(tx.conn, funding_id, kind, account_id, amount, entry_id, tx.now)
        return version, moved[(domain.cash_book(account_id), domain.USD)].quantize(domain.CENT)

    @on(topology.LEDGER_FUNDING, DepositReceived, on_reject=notify_funding_rejected)
    async def book_deposit(tx: Tx, event: DepositReceived) -> None:
        async def postings():
            return domain.deposit(event.account_id, event.amount)

        version, cash = await book_funding(tx, "deposit", event.deposit_id, event.account_id, event.amount, postings)
        tx.emit(DepositBooked(account_id=event.account_id, deposit_id=event.deposit_id, amount=event.amount,
                              cash=cash, booked_at=tx.now))
        tx.emit(CashChanged(account_id=event.account_id, cash=cash, delta=event.amount, cause="deposit",
                            cause_id=str(event.deposit_id), version=version))

    @on(topology.LEDGER_FUNDING, WithdrawalRequested, on_reject=notify_funding_rejected)
    async def book_withdrawal(tx: Tx, event: WithdrawalRequested) -> None:
        async def postings():
            cash = await store.cash_of(tx.conn, event.account_id)
            return domain.withdrawal(event.account_id, event.amount, cash)

        version, cash = await book_funding(tx, "withdrawal", event.withdrawal_id, event.account_id, event.amount,
                                           postings)
        tx.emit(WithdrawalBooked(account_id=event.account_id, withdrawal_id=event.withdrawal_id,
                                 amount=event.amount, cash=cash, booked_at=tx.now))
        tx.emit(CashChanged(account_id=event.account_id, cash=cash, delta=-event.amount, cause="withdrawal",
                            cause_id=str(event.withdrawal_id), version=version))

    @on(topology.LEDGER_FILLS, FillsAllocated)
    async def book_fills(tx: Tx, event: FillsAllocated) -> None:
        accounts = sorted({f.account_id for f in event.fills})
        locked = await store.lock_accounts(tx.conn, accounts)
        if missing := [a for a in accounts if a not in locked]:
            raise Rejected(f"fills for unknown accounts: {', '.join(missing)}")
        try:
            postings = domain.fills(event.executions, event.fills, event.residues)
        except domain.Refusal as exc:
            raise Rejected(str(exc)) from exc
        booked = await store.book_entry(tx.conn, kind="fill", reference=str(event.window_id), account_id=None,
                                        correlation_id=tx.correlation_id, booked_at=tx.now, postings=postings)
        if booked is None:
            return  # this window's fills were booked before (replayed under another message id)
        versions = await store.bump_versions(tx.conn, accounts)
        cash = await store.cash_of_many(tx.conn, accounts)
        positions = await store.positions_of_many(tx.conn, accounts)
        by_account = defaultdict(list)
        for fill in event.fills:
            by_account[fill.account_id].append(fill)
        for account_id in accounts:
            fills = by_account[account_id]
            tx.emit(FillsBooked(account_id=account_id, window_id=event.window_id, fills=fills,
                                cash=cash[account_id], positions=positions[account_id],
                                version=versions[account_id], booked_at=tx.now))
            cash_delta = sum((f.amount if f.side == "sell" else -f.amount) for f in fills)
            tx.emit(CashChanged(account_id=account_id, cash=cash[account_id], delta=cash_delta, cause="fill",
                                cause_id=str(event.window_id), version=versions[account_id]))
            deltas = defaultdict(lambda: 0)
            for f in fills:
                deltas[f.symbol] += f.quantity if f.side == "buy" else -f.quantity
            for symbol, delta in sorted(deltas.items()):
                tx.emit(PositionChanged(account_id=account_id, symbol=symbol,
                                        quantity=positions[account_id].get(symbol, 0), delta=delta,
                                        version=versions[account_id]))
