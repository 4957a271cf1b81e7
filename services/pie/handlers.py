"""Pie subscribers: keep the ledger and market projections, set pies and settings, turn cash
and requests into trade intents (services/pie/rebalance.py decides which), answer queries."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping, Sequence
from decimal import Decimal

from services.pie import domain, models, rebalance, store
from shared import topology
from shared.contracts import (
    AccountFills,
    AccountOpened,
    AccountSettings,
    ApplyModel,
    CancelRebalance,
    CashChanged,
    CashRaising,
    Fill,
    FillsBooked,
    GetPortfolio,
    Intent,
    IntentsSubmitted,
    IntentSource,
    IntentsRejected,
    ListModels,
    ModelPies,
    PieSet,
    PieSpec,
    PlannedTrade,
    PortfolioView,
    PositionChanged,
    PricesChanged,
    RaiseCash,
    Rebalance,
    RebalanceCancelled,
    RebalancePlanned,
    SecurityStatusChanged,
    SetPie,
    SetSettings,
    Side,
    WithdrawalPending,
    WithdrawalRefused,
)
from shared.messaging import Rejected, Tx
from shared.projections import apply_position_list
from shared.service import Service

# Intent and batch ids derive from the causing message id and the account, so a redone
# handler submits the same ids and the window can dedupe them (one message, a booked fills
# batch, can submit intents for many accounts).
_INTENT_NAMESPACE = uuid.UUID("3f9c1a52-7d0e-4b8e-8a7c-5e2b9d4f6a10")
log = logging.getLogger("m1.pie")


def _id(tx: Tx, account_id: str, suffix: str) -> uuid.UUID:
    return uuid.uuid5(_INTENT_NAMESPACE, f"{tx.message_id}:{account_id}:{suffix}")


async def _known_and_locked(tx: Tx, account_id: str) -> None:
    """Lock the account's row for the rest of the transaction; a command for an account this
    service has not heard of is refused."""
    if await store.get_account(tx.conn, account_id) is None:
        raise Rejected(f"unknown account {account_id}")
    await store.lock_account(tx.conn, account_id)


async def _pie_of(tx: Tx, account_id: str) -> PieSpec | None:
    text = await store.pie_json(tx.conn, account_id)
    return PieSpec.model_validate_json(text) if text is not None else None


async def _tree(tx: Tx, pie: PieSpec) -> rebalance.Tree:
    """The pie as the automated trades see it: its delisted securities left out."""
    symbols = sorted({leaf.symbol for leaf in domain.leaves(pie)})
    return rebalance.Tree(pie, exclude=frozenset(await store.delisted_of(tx.conn, symbols)))


async def _values(tx: Tx, account_id: str) -> tuple[dict[str, Decimal], dict[str, Decimal]]:
    """Slice values for the rebalancer (holdings at last prices plus pending intents) and
    the cost held, per path."""
    held = await store.holdings(tx.conn, account_id)
    prices = {h["symbol"]: h["price"] for h in held if h["price"] is not None}
    values = domain.slice_values({h["path"]: h["quantity"] for h in held}, prices,
                                 await store.pending_by_path(tx.conn, account_id))
    return values, {h["path"]: h["cost"] for h in held}


async def _submit(tx: Tx, account_id: str, tag: str, source: IntentSource, new: Sequence[store.NewIntent]) -> uuid.UUID:
    """Store the intents and emit them as one batch for the window."""
    batch_id = _id(tx, account_id, f"{tag}:batch")
    await store.insert_intents(tx.conn, account_id, batch_id, new, tx.now)
    tx.emit(IntentsSubmitted(account_id=account_id, batch_id=batch_id, intents=[
        Intent(intent_id=n.intent_id, account_id=account_id, symbol=n.symbol, side=Side(n.side), amount=n.amount,
               quantity=n.quantity, source=source)
        for n in new
    ]))
    return batch_id


def _intents(tx: Tx, account_id: str, tag: str, plan: rebalance.Plan, source: IntentSource,
             held: Mapping[str, Decimal] | None = None) -> list[store.NewIntent]:
    """The plan's trades as intents. A sell of a slice's whole value (``held``: the slice's
    shares, by path) sells its shares by quantity, so that the window never delivers more
    shares than the slice holds whatever the price does until then."""
    held = held or {}
    out = []
    for i, t in enumerate(plan.trades):
        amount, quantity = t.amount, None
        if t.side is Side.SELL and t.everything and held.get(t.path):
            amount, quantity = None, held[t.path]
        out.append(store.NewIntent(_id(tx, account_id, f"{tag}:{i}"), t.path, t.symbol, t.side.value, amount,
                                   source.value, quantity=quantity))
    return out


async def _held(tx: Tx, account_id: str) -> dict[str, Decimal]:
    return {h["path"]: h["quantity"] for h in await store.holdings(tx.conn, account_id)}


async def auto_invest(tx: Tx, account_id: str) -> None:
    """Submit buys for the account's investable cash, most underweight slices first (the
    account's row is locked by the caller)."""
    account = await store.get_account(tx.conn, account_id)
    pie = await _pie_of(tx, account_id)
    if pie is None:
        return
    values, _ = await _values(tx, account_id)
    promised = await store.pending_buys(tx.conn, account_id) + await store.held_for_withdrawals(tx.conn, account_id)
    plan = rebalance.auto_invest(await _tree(tx, pie), values, enabled=account["auto_invest"], cash=account["cash"],
                                 minimum_cash=account["minimum_cash"], pending_buys=promised)
    if plan is None or not plan.trades:
        return
    await _submit(tx, account_id, "auto", IntentSource.AUTO_INVEST,
                  _intents(tx, account_id, "auto", plan, IntentSource.AUTO_INVEST))


async def reinvest_dividend(tx: Tx, event: CashChanged) -> None:
    """With the ``reinvest`` setting, a dividend of $1 or more buys more of the paying
    security (its slice), whatever the auto-invest setting; a smaller one, or one from a
    security no longer in the pie, stays cash like any other."""
    account = await store.get_settings(tx.conn, event.account_id)
    symbol = domain.dividend_symbol(event.cause_id)
    pie = await _pie_of(tx, event.account_id)
    if account["dividends"] != "reinvest" or symbol is None or pie is None or event.delta < rebalance.MIN_BUY:
        return
    path = domain.slice_for(pie, symbol)
    if path not in {leaf.path for leaf in domain.leaves(pie)} or await store.delisted_of(tx.conn, [symbol]):
        return
    await _submit(tx, event.account_id, "dividend", IntentSource.AUTO_INVEST, [
        store.NewIntent(_id(tx, event.account_id, "dividend:0"), path, symbol, Side.BUY.value, event.delta,
                        IntentSource.AUTO_INVEST.value)])


async def reinvest(tx: Tx, account_id: str, proceeds: dict[str, Decimal]) -> None:
    """Buy, inside each pie, with the proceeds earmarked for it (a removed slice's sale),
    whatever the auto-invest setting."""
    pie = await _pie_of(tx, account_id)
    if pie is None or not proceeds:
        return
    tree = await _tree(tx, pie)
    for n, (path, amount) in enumerate(sorted(proceeds.items())):
        values, _ = await _values(tx, account_id)
        plan = rebalance.deposit(tree, values, amount, path=path if path in tree.pies else "")
        if plan.trades:
            tag = f"reinvest:{n}"
            await _submit(tx, account_id, tag, IntentSource.REBALANCE,
                          _intents(tx, account_id, tag, plan, IntentSource.REBALANCE))


async def settle_removed(tx: Tx, account_id: str, pie: PieSpec) -> None:
    """The slices in this service's books that the pie no longer has (``domain.removed_slices``):
    one whose security is still in the tree moves to its slice there, with its pending intents
    (bookkeeping: nothing trades); one whose security left the tree is sold, by share quantity
    (all of its shares, at whatever price the window gets), its proceeds earmarked for the
    nearest pie still in the tree."""
    held = {h["path"]: h for h in await store.holdings(tx.conn, account_id)}
    removed = domain.removed_slices(pie, held, pending=(await store.pending_by_path(tx.conn, account_id)).keys(),
                                    selling=await store.pending_sell_paths(tx.conn, account_id))
    await store.move_slices(tx.conn, account_id, removed.moved)
    # A delisted security does not trade: its shares stay where they are (the portfolio
    # shows them outside the pie) and are sold once it is listed again.
    delisted = await store.delisted_of(tx.conn, [held[p]["symbol"] for p in removed.sold])
    new = []
    for i, (path, into) in enumerate(removed.sold.items()):
        h = held[path]
        if h["symbol"] in delisted:
            continue
        new.append(store.NewIntent(_id(tx, account_id, f"removed:{i}"), path, h["symbol"], Side.SELL.value, None,
                                   IntentSource.REBALANCE.value, reinvest_in=into, quantity=h["quantity"]))
    if new:
        await _submit(tx, account_id, "removed", IntentSource.REBALANCE, new)


async def book(tx: Tx, part: AccountFills) -> store.Booked:
    """Book the account's fills into its slices. Fills of intents this service did not submit
    (a customer's orders) are first recorded as intents of their slices: a buy in its
    security's slice, a sell split over the slices holding the security
    (``domain.order_fill_parts``). What a sell delivered beyond its slice's shares is taken
    from the account's other slices of the security (``domain.take_oversold``); what none
    holds is logged, never booked as negative shares."""
    fills: list[Fill | domain.FillPart] = list(part.fills)
    if foreign := await store.foreign_fills(tx.conn, part.account_id, part.fills):
        ids = {f.intent_id for f in foreign}
        parts = domain.order_fill_parts(await _pie_of(tx, part.account_id), foreign,
                                        await _held(tx, part.account_id))
        await store.adopt_fills(tx.conn, part.account_id, parts, tx.now)
        fills = [*(f for f in part.fills if f.intent_id not in ids), *parts]
    booked = await store.book_fills(tx.conn, part.account_id, part.window_id, fills, tx.now)
    if booked.oversold:
        taken, missing = domain.take_oversold(await _pie_of(tx, part.account_id), booked.oversold,
                                              await _held(tx, part.account_id))
        await store.take_shares(tx.conn, part.account_id, taken)
        for symbol, shares in missing.items():
            log.warning("sold more shares than the pie's slices hold: its books stop at zero",
                        extra={"account_id": part.account_id, "symbol": symbol, "shares": str(shares),
                               "window_id": str(part.window_id), "message_id": tx.message_id})
    return booked


async def _sell(tx: Tx, account_id: str, tag: str, amount: Decimal, source: IntentSource
                ) -> tuple[Decimal, uuid.UUID | None, list[uuid.UUID]]:
    """Submit sells raising ``amount`` (or all the holdings are worth, when less) from the
    most overweight slices; returns the dollars planned, the batch and its intents' ids."""
    pie = await _pie_of(tx, account_id)
    if pie is None:
        return Decimal("0.00"), None, []
    tree = await _tree(tx, pie)
    values, _ = await _values(tx, account_id)
    holdings = sum((values.get(p, Decimal("0.00")) for p in tree.paths), Decimal("0.00"))
    amount = min(amount, holdings)
    if amount <= 0:
        return Decimal("0.00"), None, []
    plan = rebalance.withdrawal(tree, values, amount)
    if not plan.trades:
        return Decimal("0.00"), None, []
    new = _intents(tx, account_id, tag, plan, source, await _held(tx, account_id))
    batch_id = await _submit(tx, account_id, tag, source, new)
    return plan.sells, batch_id, [n.intent_id for n in new]


async def cover_shortfall(tx: Tx, account_id: str) -> None:
    """Raise by sells in the next window what the account owes beyond its cash and the sells
    already pending: held withdrawals, or a negative balance (a fee, interest). Pending buys
    do not add to it: at their window the ledger gives both claims the account's cash and
    its sells' proceeds first (docs/services/window.md, "Cash held at the ledger"). A sell
    can raise less than planned (the price fell, or the window stopped it at the shares
    held): then this runs again after its fills. Held withdrawals that nothing is left to
    sell for are refused."""
    account = await store.get_account(tx.conn, account_id)
    withdrawals = await store.held_for_withdrawals(tx.conn, account_id)
    if withdrawals <= 0 and account["cash"] >= 0:
        return  # nothing owed: the common case, two reads
    need = max(withdrawals - account["cash"], -account["cash"]) - await store.pending_sells(tx.conn, account_id)
    if need <= 0:
        return
    source = IntentSource.REBALANCE if withdrawals > 0 else IntentSource.LIQUIDATION
    planned, _, _ = await _sell(tx, account_id, "cover", need, source)
    if planned > 0 or withdrawals <= 0:
        return
    free = account["cash"]
    for w in await store.open_withdrawals(tx.conn, account_id):
        if w["amount"] <= free:
            free -= w["amount"]
            continue
        reason = (f"withdrawal of ${w['amount']} can no longer be covered: cash ${max(free, 0)}, "
                  f"nothing left to sell")
        if await store.refuse_withdrawal(tx.conn, w["withdrawal_id"], reason):
            tx.emit(WithdrawalRefused(account_id=account_id, withdrawal_id=w["withdrawal_id"], amount=w["amount"],
                                      reason=reason))


def register(service: Service) -> None:
    on = service.handler

    # ---------------------------------------------------------------- ledger projection

    @on(topology.PIE_LEDGER, AccountOpened)
    async def account_opened(tx: Tx, event: AccountOpened) -> None:
        await store.open_account(tx.conn, event.account_id, event.kind.value, event.plan.value, event.opened_at)

    @on(topology.PIE_LEDGER, CashChanged)
    async def cash_changed(tx: Tx, event: CashChanged) -> None:
        await store.lock_account(tx.conn, event.account_id)
        if event.cause == "withdrawal":
            await store.withdrawal_paid(tx.conn, uuid.UUID(event.cause_id), event.account_id, -event.delta, tx.now)
        moved = await store.apply_cash(tx.conn, event.account_id, event.cash, event.version)
        # Cash from fills is invested by the FillsBooked handler, after it has marked the fills
        # and earmarked a removed slice's proceeds: the two events are handled concurrently, so
        # investing here too could spend the same proceeds twice.
        if moved and event.cause == "dividend":
            await reinvest_dividend(tx, event)
        if moved and event.cause != "fill":
            await auto_invest(tx, event.account_id)
            await cover_shortfall(tx, event.account_id)

    @on(topology.PIE_WINDOW, IntentsRejected)
    async def intents_rejected(tx: Tx, event: IntentsRejected) -> None:
        """A window dropped some of this service's intents for good: they no longer hold cash
        back as pending buys (the cash is invested again on the account's next change)."""
        await store.lock_account(tx.conn, event.account_id)
        await store.reject_intents(tx.conn, event.account_id, event.reasons)

    @on(topology.PIE_LEDGER, PositionChanged)
    async def position_changed(tx: Tx, event: PositionChanged) -> None:
        await store.lock_account(tx.conn, event.account_id)
        await store.apply_position(tx.conn, event.account_id, event.symbol, event.quantity, event.version)

    @on(topology.PIE_LEDGER, FillsBooked)
    async def fills_booked(tx: Tx, event: FillsBooked) -> None:
        """A booked fills batch: each account's part in turn, in the batch's order (by account
        id, so two transactions lock the accounts they share in the same order)."""
        for part in event.accounts:
            await account_fills_booked(tx, part)

    async def account_fills_booked(tx: Tx, part: AccountFills) -> None:
        await store.lock_account(tx.conn, part.account_id)
        cash_moved = await store.apply_cash(tx.conn, part.account_id, part.cash, part.version)
        await apply_position_list(tx.conn, part.account_id, part.positions, part.version)
        booked = await book(tx, part)
        await reinvest(tx, part.account_id, booked.reinvest)
        if booked.filled and (pie := await _pie_of(tx, part.account_id)) is not None:
            await settle_removed(tx, part.account_id, pie)  # a buy that filled into a removed slice
        if booked.liquidated:
            # A liquidation's proceeds are for what it was asked to pay (a margin loan, a
            # negative balance): nothing is invested until the next cash change after it.
            await cover_shortfall(tx, part.account_id)
        elif cash_moved or booked.filled:
            await auto_invest(tx, part.account_id)
            await cover_shortfall(tx, part.account_id)

    @on(topology.PIE_WITHDRAWALS, WithdrawalPending)
    async def withdrawal_pending(tx: Tx, event: WithdrawalPending) -> None:
        """Cash first, then sells of the most overweight slices for the rest; or a refusal
        when the account cannot cover the withdrawal."""
        await store.lock_account(tx.conn, event.account_id)
        pie = await _pie_of(tx, event.account_id)
        values, _ = await _values(tx, event.account_id)
        tree = await _tree(tx, pie) if pie is not None else None
        paths = tree.paths if tree is not None else []
        holdings = sum((values.get(p, Decimal("0.00")) for p in paths), Decimal("0.00"))
        need = domain.withdrawal_need(event.amount, cash=event.cash, shortfall=event.shortfall, holdings=holdings)
        status = "refused" if need.refusal else "open"
        if not await store.record_withdrawal(tx.conn, event.withdrawal_id, event.account_id, event.amount, status,
                                             need.refusal, tx.now):
            return  # seen before, or already paid
        if need.refusal:
            tx.emit(WithdrawalRefused(account_id=event.account_id, withdrawal_id=event.withdrawal_id,
                                      amount=event.amount, reason=need.refusal))
            return
        plan = rebalance.withdrawal(tree, values, need.sell) if need.sell > 0 else rebalance.Plan([])
        if plan.trades:
            await _submit(tx, event.account_id, "withdrawal", IntentSource.REBALANCE,
                          _intents(tx, event.account_id, "withdrawal", plan, IntentSource.REBALANCE,
                                   await _held(tx, event.account_id)))

    @on(topology.PIE_COMMANDS, RaiseCash)
    async def raise_cash(tx: Tx, cmd: RaiseCash) -> CashRaising:
        """Sell ``amount`` from the most overweight slices in the next window (all the
        holdings when they are worth less), once per request id."""
        await _known_and_locked(tx, cmd.account_id)
        if (seen := await store.cash_request(tx.conn, cmd.request_id)) is not None:
            return CashRaising(account_id=seen["account_id"], request_id=cmd.request_id, amount=seen["amount"],
                               planned=seen["planned"], batch_id=seen["batch_id"], reason=seen["reason"],
                               intent_ids=seen["intent_ids"])
        planned, batch_id, intent_ids = await _sell(tx, cmd.account_id, "raise", cmd.amount, cmd.source)
        await store.record_cash_request(tx.conn, cmd.request_id, cmd.account_id, cmd.amount, planned, batch_id,
                                        intent_ids, cmd.reason, tx.now)
        event = CashRaising(account_id=cmd.account_id, request_id=cmd.request_id, amount=cmd.amount,
                            planned=planned, batch_id=batch_id, reason=cmd.reason, intent_ids=intent_ids)
        tx.emit(event)
        return event

    # ---------------------------------------------------------------- market projection

    @on(topology.PIE_MARKET, PricesChanged)
    async def prices_changed(tx: Tx, event: PricesChanged) -> None:
        await store.apply_prices(tx.conn, event.prices, event.as_of)

    @on(topology.PIE_MARKET, SecurityStatusChanged)
    async def security_status_changed(tx: Tx, event: SecurityStatusChanged) -> None:
        """A delisted security: the pies holding it need adjustment (the portfolio view says
        so) and the automated trades leave it out; listed again: both end, and the shares of
        slices removed meanwhile are sold."""
        applied = await store.set_listed(tx.conn, event.symbol, event.price,
                                         None if event.active else event.reason or "delisted", event.changed_at)
        if applied and event.active:
            # Shares of removed slices kept while it was delisted are sold now, as removal sells.
            for account_id in await store.holders_outside_pie(tx.conn, event.symbol):
                await store.lock_account(tx.conn, account_id)
                if (pie := await _pie_of(tx, account_id)) is not None:
                    await settle_removed(tx, account_id, pie)

    # ---------------------------------------------------------------- pies and settings

    async def set_tree(tx: Tx, account_id: str, pie: PieSpec) -> PieSet:
        """Validate and store the account's pie; move the holdings of slices moved within it and
        liquidate those of securities it no longer has. New targets alone trade nothing."""
        errors = []
        if await store.get_account(tx.conn, account_id) is None:
            errors.append(f"unknown account {account_id}")
        symbols = sorted({leaf.symbol for leaf in domain.leaves(pie)})
        errors += domain.validate(pie, (await store.prices_of(tx.conn, symbols)).keys())
        current = await _pie_of(tx, account_id) if not errors else None
        kept = {leaf.symbol for leaf in domain.leaves(current)} if current is not None else set()
        errors += [f"{symbol} is delisted ({reason}) and cannot be added to a pie"
                   for symbol, reason in (await store.delisted_of(tx.conn, symbols)).items() if symbol not in kept]
        if errors:
            raise Rejected("pie refused: " + "; ".join(errors), errors=errors)
        await store.lock_account(tx.conn, account_id)
        version = await store.set_pie(tx.conn, account_id, pie.name, pie.model_dump_json(), tx.now)
        await settle_removed(tx, account_id, pie)
        event = PieSet(account_id=account_id, pie=pie, version=version)
        tx.emit(event)
        return event

    @on(topology.PIE_COMMANDS, SetPie)
    async def set_pie(tx: Tx, cmd: SetPie) -> PieSet:
        return await set_tree(tx, cmd.account_id, cmd.pie)

    @on(topology.PIE_COMMANDS, ApplyModel)
    async def apply_model(tx: Tx, cmd: ApplyModel) -> PieSet:
        found = models.model(cmd.model)
        if found is None:
            known = ", ".join(m.key for m in models.all_models())
            raise Rejected(f"unknown model pie {cmd.model!r} (known: {known})")
        return await set_tree(tx, cmd.account_id, found.pie)

    @on(topology.PIE_COMMANDS, ListModels, idempotent=False)
    async def list_models(tx: Tx, query: ListModels) -> ModelPies:
        return ModelPies(models=list(models.all_models()))

    @on(topology.PIE_COMMANDS, SetSettings)
    async def set_settings(tx: Tx, cmd: SetSettings) -> AccountSettings:
        await _known_and_locked(tx, cmd.account_id)
        row = await store.set_settings(tx.conn, cmd.account_id, cmd.auto_invest, cmd.minimum_cash, cmd.dividends)
        event = AccountSettings(account_id=cmd.account_id, auto_invest=row["auto_invest"],
                                minimum_cash=row["minimum_cash"], dividends=row["dividends"])
        if (cmd.auto_invest, cmd.minimum_cash, cmd.dividends) != (None, None, None):
            tx.emit(event)
            await auto_invest(tx, cmd.account_id)  # cash may now be investable
        return event

    # ---------------------------------------------------------------- manual rebalance

    @on(topology.PIE_COMMANDS, Rebalance)
    async def rebalance_pie(tx: Tx, cmd: Rebalance) -> RebalancePlanned:
        await _known_and_locked(tx, cmd.account_id)
        pie = await _pie_of(tx, cmd.account_id)
        if pie is None:
            raise Rejected(f"account {cmd.account_id} has no pie to rebalance")
        values, costs = await _values(tx, cmd.account_id)
        tree = await _tree(tx, pie)
        if cmd.path in domain.pie_paths(pie) and cmd.path not in tree.pies:
            raise Rejected(f"pie {cmd.path!r} has nothing to trade: every security in it is delisted")
        try:
            plan = rebalance.rebalance(tree, values, path=cmd.path, top_level_only=cmd.top_level_only)
        except rebalance.RebalanceError as exc:
            raise Rejected(str(exc)) from exc
        new = _intents(tx, cmd.account_id, "rebalance", plan, IntentSource.REBALANCE,
                       await _held(tx, cmd.account_id))
        batch_id = await _submit(tx, cmd.account_id, "rebalance", IntentSource.REBALANCE, new) if new else None
        event = RebalancePlanned(
            account_id=cmd.account_id, batch_id=batch_id, path=cmd.path, top_level_only=cmd.top_level_only,
            trades=[PlannedTrade(path=t.path, symbol=t.symbol, side=t.side, amount=t.amount) for t in plan.trades],
            left_out=plan.left_out, estimated_gain=rebalance.estimated_gain(plan, values, costs))
        tx.emit(event)
        return event

    @on(topology.PIE_COMMANDS, CancelRebalance)
    async def cancel_rebalance(tx: Tx, cmd: CancelRebalance) -> RebalanceCancelled:
        await _known_and_locked(tx, cmd.account_id)
        cancelled = await store.cancel_batch(tx.conn, cmd.account_id, cmd.batch_id, cmd.intent_ids)
        event = RebalanceCancelled(account_id=cmd.account_id, batch_id=cmd.batch_id, cancelled=cancelled)
        tx.emit(event)
        return event

    # ---------------------------------------------------------------- queries

    @on(topology.PIE_COMMANDS, GetPortfolio, idempotent=False)
    async def get_portfolio(tx: Tx, query: GetPortfolio) -> PortfolioView:
        snap = await store.snapshot(tx.conn, query.account_id)
        if snap is None:
            raise Rejected(f"unknown account {query.account_id}")
        pie = PieSpec.model_validate_json(snap.tree_json) if snap.tree_json is not None else None
        slices = domain.view_slices(pie, snap.holdings, snap.prices) if pie is not None else []
        delisted = await store.delisted_of(tx.conn, [*{domain.symbol_of(p) for p in snap.holdings},
                                                     *(s.symbol for s in slices if s.symbol)])
        outside = domain.held_outside(pie, snap.holdings, snap.prices, delisted)
        totals = domain.totals(slices, snap.cash, outside)
        inactive = sorted({s.symbol for s in slices if s.symbol in delisted})
        return PortfolioView(account_id=query.account_id, pie_name=pie.name if pie else None, cash=snap.cash,
                             pending_buys=snap.pending_buys, invested=totals.invested, total=totals.total,
                             slices=slices, inactive=inactive, needs_adjustment=bool(inactive), outside=outside)
