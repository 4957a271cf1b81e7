"""Window subscribers: parse the contract, one transaction, domain rules, emit what follows."""

from __future__ import annotations

import uuid

from services.window import domain, store
from shared import topology
from shared.contracts import CloseWindow, ExecuteOrders, FillsAllocated, IntentsSubmitted, OrdersExecuted, WindowClosing
from shared.messaging import Rejected, Tx
from shared.service import Service

# Window ids derive from the closing command's message id: the inbox handles each id once.
_WINDOW_NAMESPACE = uuid.UUID("3b0f4f0e-6f43-4c55-9d0e-5f2d7c1a8e21")


def register(service: Service) -> None:
    on = service.handler

    @on(topology.WINDOW_INTENTS, IntentsSubmitted)
    async def collect_intents(tx: Tx, event: IntentsSubmitted) -> None:
        try:
            domain.check_batch(event)
        except domain.Refusal as exc:
            raise Rejected(str(exc)) from exc
        if conflicts := await store.conflicting_intents(tx.conn, event.intents):
            raise Rejected("intent ids already used for different intents: " + ", ".join(map(str, conflicts)))
        await store.insert_intents(tx.conn, event.batch_id, event.intents, tx.now)

    @on(topology.WINDOW_COMMANDS, CloseWindow)
    async def close_window(tx: Tx, cmd: CloseWindow) -> WindowClosing:
        await store.lock_closing(tx.conn)
        window_id = uuid.uuid5(_WINDOW_NAMESPACE, tx.message_id)
        intents = await store.freeze_pending(tx.conn, window_id)
        if not intents:
            return WindowClosing(window_id=None, intents=0, accounts=0, orders=[])
        orders = domain.net_orders(intents)
        await store.insert_window(tx.conn, window_id, tx.now)
        await store.insert_orders(tx.conn, window_id, orders)
        tx.emit(ExecuteOrders(window_id=window_id, orders=orders), command=True)
        return WindowClosing(window_id=window_id, intents=len(intents), accounts=len({i.account_id for i in intents}),
                             orders=orders)

    @on(topology.WINDOW_EXECUTIONS, OrdersExecuted)
    async def allocate_fills(tx: Tx, event: OrdersExecuted) -> None:
        window = await store.lock_window(tx.conn, event.window_id)
        if window is None:
            raise Rejected(f"unknown window {event.window_id}")
        if window["status"] == "allocated":
            return  # allocated before (the same executions again under another message id)
        intents = await store.intents_of(tx.conn, event.window_id)
        try:
            allocation = domain.allocate(intents, event.executions)
        except domain.Refusal as exc:
            raise Rejected(str(exc)) from exc
        await store.record_executions(tx.conn, event.window_id, event.executions)
        await store.insert_fills(tx.conn, event.window_id, allocation.fills)
        await store.insert_residues(tx.conn, event.window_id, allocation.residues)
        await store.mark_allocated(tx.conn, event.window_id, event.executed_at, tx.now,
                                   domain.summary(intents, event.executions, allocation.residues))
        tx.emit(FillsAllocated(window_id=event.window_id, executions=event.executions, fills=allocation.fills,
                               residues=allocation.residues))
