"""Ledger subscribers: parse the contract, book in one transaction, emit what changed."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

from services.ledger import domain, fills_store, report_handlers, reports_store, settlement, store
from services.ledger import lots_handlers
from services.ledger import loans
from shared import topology
from shared.contracts import (
    AccountBalances,
    AccountOpened,
    CashChanged,
    DepositBooked,
    DepositReceived,
    FillsAllocated,
    FillsBatch,
    FillsBooked,
    FundingRejected,
    GetAccount,
    HoldWindowCash,
    OpenAccount,
    ReleaseWindowCash,
    WindowCashHeld,
    WithdrawalBooked,
    WithdrawalPending,
    WithdrawalRefused,
    WithdrawalRequested,
)
from shared.db import bulk_memory
from shared.messaging import Rejected, Tx
from shared.service import Service



def register(service: Service) -> None:
    on = service.handler
    lots_handlers.register(service)  # tax lots, dividends, fees, interest, gains
    loans.register(service)  # margin loans: draws, repayments, interest charges

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
        if await store.open_withdrawals(tx.conn, event.account_id):
            await pay_out_held(tx, event.account_id)  # the deposit may cover a held withdrawal

    @on(topology.LEDGER_FUNDING, WithdrawalRequested, on_reject=notify_funding_rejected)
    async def book_withdrawal(tx: Tx, event: WithdrawalRequested) -> None:
        await loans.check_withdrawal(tx, event.account_id, event.amount, service.settings.margin_withdrawal_max_loan)
        if await hold_if_short(tx, event):
            return
        async def postings():
            cash = await store.cash_of(tx.conn, event.account_id)
            return domain.withdrawal(event.account_id, event.amount, cash)

        version, cash = await book_funding(tx, "withdrawal", event.withdrawal_id, event.account_id, event.amount,
                                           postings)
        tx.emit(WithdrawalBooked(account_id=event.account_id, withdrawal_id=event.withdrawal_id,
                                 amount=event.amount, cash=cash, booked_at=tx.now))
        tx.emit(CashChanged(account_id=event.account_id, cash=cash, delta=-event.amount, cause="withdrawal",
                            cause_id=str(event.withdrawal_id), version=version))

    # ---------------------------------------------------------------- withdrawals waiting for sells

    async def hold_if_short(tx: Tx, event: WithdrawalRequested) -> bool:
        """A withdrawal larger than the cash is held (``ledger.withdrawal.pending``) while the
        pie service sells the shortfall; one within the cash but not settled yet is held
        until it settles, and announced too (shortfall 0) so that the pie keeps the cash
        back from auto-invest. True when held (now or before)."""
        if tx.message_id != str(event.withdrawal_id) or await store.get_account(
                tx.conn, event.account_id, lock=True) is None:
            return False  # book_funding rejects it with the reason
        if await store.find_funding(tx.conn, event.withdrawal_id) is not None:
            return False  # booked before: book_funding answers the duplicate
        # Withdrawals already held come first: only the cash they leave is free for this one,
        # so a later, smaller withdrawal never overtakes a held one and strands it.
        held = await store.held_withdrawals(tx.conn, event.account_id)
        # Settlement (report_handlers, settlement.py): unsettled sale proceeds and deposits
        # on hold cannot leave yet.
        state = await report_handlers.cash_state(tx.conn, event.account_id, tx.now, service.settings,
                                                 held_withdrawals=held)
        decision = settlement.decide(event.amount, state, await reports_store.holds_securities(tx.conn,
                                                                                                event.account_id))
        if decision == settlement.Decision.PAY:
            return False
        if decision == settlement.Decision.REFUSE:
            raise Rejected(f"insufficient withdrawable cash: requested {event.amount}, withdrawable "
                           f"{state.withdrawable}; {state.on_hold} of deposits are on hold for "
                           f"{service.settings.ledger_deposit_hold_days} business days after they arrive")
        # WAIT: the cash is there, paid once the sales settle (shortfall 0); else the pie
        # sells the shortfall.
        cash = state.free_after_holds
        if await store.hold_withdrawal(tx.conn, event.withdrawal_id, event.account_id, event.amount, tx.now):
            shortfall = max(event.amount - cash, Decimal("0.00"))
            tx.emit(WithdrawalPending(account_id=event.account_id, withdrawal_id=event.withdrawal_id,
                                      amount=event.amount, cash=cash, shortfall=shortfall,
                                      requested_at=event.requested_at))
        return True

    async def pay_out_held(tx: Tx, account_id: str) -> None:
        """Pay the account's held withdrawals, oldest first, while its withdrawable cash
        (settled, not on hold) covers them. Also run by the settlement sweep."""
        if await store.get_account(tx.conn, account_id, lock=True) is None:
            return
        for held in await store.open_withdrawals(tx.conn, account_id):
            cash = await store.cash_of(tx.conn, account_id)
            state = await report_handlers.cash_state(tx.conn, account_id, tx.now, service.settings)
            if not settlement.payable(held["amount"], state):
                return
            version = await store.bump_version(tx.conn, account_id)
            booked = await store.book_entry(
                tx.conn, kind="withdrawal", reference=str(held["withdrawal_id"]), account_id=account_id,
                correlation_id=tx.correlation_id, booked_at=tx.now,
                postings=domain.withdrawal(account_id, held["amount"], cash))
            entry_id, moved = booked
            cash = moved[(domain.cash_book(account_id), domain.USD)].quantize(domain.CENT)
            await store.insert_funding(tx.conn, held["withdrawal_id"], "withdrawal", account_id,
                                       held["amount"], entry_id, tx.now)
            await store.close_withdrawal(tx.conn, held["withdrawal_id"], "paid")
            tx.emit(WithdrawalBooked(account_id=account_id, withdrawal_id=held["withdrawal_id"],
                                     amount=held["amount"], cash=cash, booked_at=tx.now))
            tx.emit(CashChanged(account_id=account_id, cash=cash, delta=-held["amount"], cause="withdrawal",
                                cause_id=str(held["withdrawal_id"]), version=version))

    @on(topology.LEDGER_WITHDRAWALS, WithdrawalRefused)
    async def reject_held_withdrawal(tx: Tx, event: WithdrawalRefused) -> None:
        """The pie cannot raise the shortfall: the withdrawal is rejected and the holder told."""
        closed = await store.close_withdrawal(tx.conn, event.withdrawal_id, "rejected", event.reason)
        if closed is not None:
            tx.emit(FundingRejected(account_id=closed["account_id"], funding_type="withdrawal",
                                    funding_id=str(event.withdrawal_id), amount=format(closed["amount"], "f"),
                                    reason=event.reason))

    @on(topology.LEDGER_FILLS, FillsAllocated)
    async def book_fills(tx: Tx, event: FillsAllocated) -> None:
        """A whole window's fills in one entry (reference ``<window>``), which must balance by
        itself."""
        try:
            domain.fills(event.executions, event.fills, event.residues)  # refuses an unbalanced window
        except domain.Refusal as exc:
            raise Rejected(str(exc)) from exc
        rows = fills_store.rows_of(event.fills)
        if await book_window_fills(tx, event.window_id, str(event.window_id), 0, rows, fills_store.fills_json(rows),
                                   event.executions, event.residues, clearing=None):
            await release_window_cash(tx, event.window_id)  # the window is booked

    @on(topology.LEDGER_FILLS, FillsBatch)
    async def book_fills_batch(tx: Tx, event: FillsBatch) -> None:
        """One batch of a window's fills: one entry (reference ``<window>:<batch>``), booked
        once, all or nothing; the batch completing the window checks its clearing book."""
        clearing = domain.clearing_book(event.window_id)
        if not await book_window_fills(tx, event.window_id, f"{event.window_id}:{event.batch}", event.batch,
                                       event.fills, tx.body, event.executions, event.residues, clearing=clearing):
            return
        # Last: the check takes a lock per window held to commit (so that of two batches
        # booked at once, the later sees the other's entry); the work above runs in parallel.
        if not await store.all_batches_booked(tx.conn, str(event.window_id), event.batches):
            return
        if off := await store.unbalanced(tx.conn, clearing):
            raise Rejected(f"window {event.window_id} does not balance over its {event.batches} batches: "
                           + ", ".join(f"{r['asset']} off by {r['amount']}" for r in off))
        # The window is booked: cash still held for it (accounts without fills) is free.
        await release_window_cash(tx, event.window_id)

    async def book_window_fills(tx: Tx, window_id, reference: str, batch: int, fills: Sequence[tuple],
                                fills_json: str | bytes, executions, residues, clearing: str | None) -> bool:
        """Book fills as one entry, set-based: postings and balances, trade records, tax lots,
        and one ``ledger.fills.booked`` for all their accounts. ``fills`` are rows in
        ``FILL_ROW`` order; ``fills_json`` the same as JSON, staged by PostgreSQL
        (``fills_store.stage``). False when the entry was booked before (a replay under
        another message id)."""
        accounts = sorted({row[1] for row in fills})
        locked = await store.lock_accounts(tx.conn, accounts)
        if missing := [a for a in accounts if a not in locked]:
            raise Rejected(f"fills for unknown accounts: {', '.join(missing)}")
        entry_id = await store.insert_entry(tx.conn, kind="fill", reference=reference, account_id=None,
                                            correlation_id=tx.correlation_id, booked_at=tx.now)
        if entry_id is None:
            return False
        await bulk_memory(tx.conn)
        await fills_store.stage(tx.conn, fills_json)
        await fills_store.insert_postings(tx.conn, entry_id, executions, residues, clearing)
        await fills_store.insert_trades(tx.conn, entry_id, window_id, tx.now,
                                        settlement.settles_on(tx.now, service.settings.ledger_settlement_days))
        await lots_handlers.book_lots(tx, window_id)
        if fills:
            tx.emit_json(FillsBooked, (await fills_store.fills_booked_json(tx.conn, window_id, batch,
                                                                            tx.now)).encode())
        # The cash held for these accounts' buys is spent now; held withdrawals the fills may
        # now cover (after the fills' event: it reports the cash the fills left), oldest first.
        await release_window_cash(tx, window_id, accounts)
        return True

    # ---------------------------------------------------------------- cash held for windows

    @on(topology.LEDGER_COMMANDS, HoldWindowCash)
    async def hold_window_cash(tx: Tx, cmd: HoldWindowCash) -> None:
        """Hold what a window's buys take from each account's cash, against withdrawals, and
        tell the window which accounts have less than it counted (``ledger.window.held``)."""
        accounts = [a for a, _ in cmd.holds]
        if len(set(accounts)) != len(accounts):
            raise Rejected(f"window {cmd.window_id}: an account is listed more than once")
        if await store.window_fills_booked(tx.conn, str(cmd.window_id)):
            return  # the window traded long ago (this is a stray copy): holding now would never be released
        await store.lock_accounts(tx.conn, sorted(accounts))  # a withdrawal waits, or goes first
        short = await store.hold_window_cash(tx.conn, cmd.window_id, accounts, [Decimal(m) for _, m in cmd.holds],
                                             tx.now)
        tx.emit(WindowCashHeld(window_id=cmd.window_id, short=short))

    @on(topology.LEDGER_COMMANDS, ReleaseWindowCash)
    async def release_unbooked_window(tx: Tx, cmd: ReleaseWindowCash) -> None:
        await release_window_cash(tx, cmd.window_id)

    async def release_window_cash(tx: Tx, window_id, accounts: list[str] | None = None) -> None:
        """Release the window's holds of ``accounts`` (their fills are booked) or, with None,
        every hold left; then pay the held withdrawals of those accounts that the cash now
        covers."""
        released = await store.release_window_cash(tx.conn, window_id, accounts)
        for account_id in await store.with_open_withdrawals(tx.conn, released if accounts is None else accounts):
            await pay_out_held(tx, account_id)

    report_handlers.register(service, pay_out_held)
