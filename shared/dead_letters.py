"""Every service's dead letters, for an operator: list them, read one, replay one.

A refused message is kept in the service's ``dead_letters`` table with the reason
(shared/messaging.py). After the cause is fixed (the account opened, the bug fixed), the
operator replays it: the refusal's inbox row is removed and the body goes again, under its
own message id and correlation id, to the queue that refused it and to no other.
It is published through the default exchange, whose routing key is the queue's name, with
its own routing key in a header the consumer routes by: an event other services took once
is not delivered to them again. A dead letter is replayed once; if the replay is refused
too, that is a new dead letter with the new reason.

The three messages reach a service on its commands queue under ``<service>.dead_letters.*``
(``contracts.dead_letter_key``); ``m1 dead-letters`` sends them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import asyncpg

from shared.contracts import (
    DeadLetter,
    DeadLetterList,
    DeadLetterView,
    GetDeadLetter,
    ListDeadLetters,
    ReplayDeadLetter,
    dead_letter_key,
)
from shared.messaging import ORIGINAL_KEY_HEADER, Rejected, Tx
from shared.topology import queues_of

if TYPE_CHECKING:
    from shared.service import Service

_COLUMNS = """id, message_id, routing_key, queue, correlation_id, account_id, reason, received_at, replayed_at,
              answered, octet_length(body) AS size"""


def _dead_letter(row: asyncpg.Record, body: bytes | None = None) -> DeadLetter:
    return DeadLetter(**{k: row[k] for k in DeadLetter.model_fields if k != "body"},
                      body=None if body is None else body.decode("utf-8", errors="replace"))


def register(service: Service) -> None:
    """Answer ``ListDeadLetters``, ``GetDeadLetter`` and ``ReplayDeadLetter`` on the
    service's commands queue."""
    commands = next((q for q in queues_of(service.name) if q.name == f"{service.name}.commands"), None)
    if commands is None:
        return

    def on(model, **kw):
        return service.handler(commands, model, key=dead_letter_key(model, service.name), **kw)

    @on(ListDeadLetters, idempotent=False)
    async def list_dead_letters(tx: Tx, query: ListDeadLetters) -> DeadLetterList:
        rows = await tx.conn.fetch(
            f"""SELECT {_COLUMNS} FROM dead_letters WHERE $1 OR replayed_at IS NULL ORDER BY id DESC LIMIT $2""",
            query.replayed, query.limit)
        return DeadLetterList(service=service.name, dead_letters=[_dead_letter(r) for r in rows])

    @on(GetDeadLetter, idempotent=False)
    async def get_dead_letter(tx: Tx, query: GetDeadLetter) -> DeadLetterView:
        row = await tx.conn.fetchrow(f"SELECT {_COLUMNS}, body FROM dead_letters WHERE id = $1", query.id)
        if row is None:
            raise Rejected(f"{service.name} has no dead letter {query.id}")
        return DeadLetterView(service=service.name, dead_letter=_dead_letter(row, row["body"]))

    @on(ReplayDeadLetter)
    async def replay_dead_letter(tx: Tx, cmd: ReplayDeadLetter) -> DeadLetterView:
        row = await tx.conn.fetchrow(f"SELECT {_COLUMNS}, body FROM dead_letters WHERE id = $1 FOR UPDATE", cmd.id)
        if row is None:
            raise Rejected(f"{service.name} has no dead letter {cmd.id}")
        if row["replayed_at"] is not None:
            raise Rejected(f"dead letter {cmd.id} of {service.name} was replayed at {row['replayed_at'].isoformat()}")
        taking = [q.name for q, routes in service.consumer.routes.items() if row["routing_key"] in routes]
        # rows refused before the queue was recorded: the one queue with a handler for the key
        queue = row["queue"] or (taking[0] if len(taking) == 1 else None)
        if queue not in taking:
            raise Rejected(f"no handler of {service.name} takes {row['routing_key']!r}"
                           f"{f' on {queue}' if queue else ''}: a replay would be refused again")
        # The refusal's inbox row goes, so that the message is handled again under its own id
        # (the funding contract's ids are the deposits' and withdrawals' own; a replay refused
        # again records the refusal anew). A message handled since (a conflict: another body
        # was accepted under its id) is not replayed.
        handled = await tx.conn.fetchval(
            """WITH gone AS (DELETE FROM inbox WHERE message_id = $1 AND outcome = 'rejected' RETURNING 1)
               SELECT outcome FROM inbox WHERE message_id = $1 AND NOT EXISTS (SELECT 1 FROM gone)""",
            row["message_id"])
        if handled is not None:
            raise Rejected(f"message {row['message_id']} was handled ({handled}) under its id since it was refused: "
                           "a replay would be a duplicate")
        tx.send_to_queue(queue, row["routing_key"], row["message_id"], row["body"],
                         correlation_id=row["correlation_id"] or row["message_id"],
                         headers={ORIGINAL_KEY_HEADER: row["routing_key"]})
        row = await tx.conn.fetchrow(
            f"""UPDATE dead_letters SET replayed_at = $2, queue = $3 WHERE id = $1 RETURNING {_COLUMNS}""",
            cmd.id, tx.now, queue)
        service.log.warning("dead letter replayed", extra={
            "dead_letter": cmd.id, "replayed_message_id": row["message_id"], "routing_key": row["routing_key"],
            "queue": queue})
        return DeadLetterView(service=service.name, dead_letter=_dead_letter(row))
