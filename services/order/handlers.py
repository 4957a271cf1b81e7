"""Order subscribers. For now only the account projection that order validation will read."""

from __future__ import annotations

from services.order import store
from shared import topology
from shared.contracts import AccountOpened
from shared.messaging import Tx
from shared.service import Service


def register(service: Service) -> None:
    on = service.handler

    @on(topology.ORDER_LEDGER, AccountOpened)
    async def account_opened(tx: Tx, event: AccountOpened) -> None:
        await store.upsert_account(tx.conn, event.account_id, event.kind, event.plan, event.opened_at)
