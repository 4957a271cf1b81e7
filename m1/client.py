"""A thin client of the bus: request/reply commands and the bank's funding events."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from decimal import Decimal

import aio_pika
from pydantic import ValidationError

from shared.contracts import DepositReceived, Message, Reply, WithdrawalRequested
from shared.messaging import validation_errors
from shared.settings import Settings
from shared.topology import COMMANDS_EXCHANGE, EVENTS_EXCHANGE


def explain(exc: Exception) -> str:
    """A refused input as one line: each field and why (``amount: must be positive``)."""
    return "; ".join(validation_errors(exc)) if isinstance(exc, ValidationError) else str(exc)


class ServiceError(Exception):
    """A command the service refused, with its reasons."""

    def __init__(self, reply: Reply) -> None:
        super().__init__(reply.reason or "refused")
        self.reply = reply


class Client:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    async def __aenter__(self) -> Client:
        self.connection = await aio_pika.connect_robust(self.settings.rabbitmq_url)
        self.channel = await self.connection.channel(publisher_confirms=True)
        self.events = await self.channel.declare_exchange(EVENTS_EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True)
        self.commands = await self.channel.declare_exchange(COMMANDS_EXCHANGE, aio_pika.ExchangeType.TOPIC,
                                                            durable=True)
        self.replies = await self.channel.declare_queue(exclusive=True, auto_delete=True)
        self._waiting: dict[str, asyncio.Future] = {}
        await self.replies.consume(self._on_reply, no_ack=True)
        return self

    async def __aexit__(self, *exc) -> None:
        await self.connection.close()

    async def _on_reply(self, message: aio_pika.abc.AbstractIncomingMessage) -> None:
        future = self._waiting.pop(message.correlation_id or "", None)
        if future is not None and not future.done():
            future.set_result(Reply.model_validate_json(message.body))

    async def request(self, command: Message, *, message_id: str | None = None, routing_key: str | None = None
                      ) -> Reply:
        """Send a command (routing key ``command.TYPE`` unless given); wait for the reply
        (the service's answer or its refusal)."""
        correlation_id = str(uuid.uuid4())
        future = asyncio.get_running_loop().create_future()
        self._waiting[correlation_id] = future
        await self.commands.publish(
            aio_pika.Message(command.model_dump_json().encode(), message_id=message_id or str(uuid.uuid4()),
                             correlation_id=correlation_id, reply_to=self.replies.name, type=command.TYPE,
                             content_type="application/json", headers={"x-schema-version": command.VERSION},
                             delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
            routing_key=routing_key or command.TYPE,
        )
        try:
            return await asyncio.wait_for(future, self.settings.request_timeout)
        except TimeoutError as exc:
            self._waiting.pop(correlation_id, None)
            raise TimeoutError(f"no answer to {routing_key or command.TYPE} within {self.settings.request_timeout}s: "
                               "is the service running (m1 up)?") from exc

    async def call(self, command: Message, *, routing_key: str | None = None) -> dict:
        """``request`` that raises ServiceError on a refusal and returns the result."""
        reply = await self.request(command, routing_key=routing_key)
        if not reply.ok:
            raise ServiceError(reply)
        return reply.result or {}

    async def publish_event(self, event: Message, message_id: str) -> None:
        """Publish an event exactly as an upstream system would: persistent, confirmed."""
        await self.events.publish(
            aio_pika.Message(event.model_dump_json().encode(), message_id=message_id, correlation_id=message_id,
                             content_type="application/json", type=event.TYPE,
                             delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
            routing_key=event.TYPE,
        )

    async def deposit(self, account_id: str, amount: Decimal, deposit_id: uuid.UUID | None = None) -> DepositReceived:
        event = DepositReceived(deposit_id=deposit_id or uuid.uuid4(), account_id=account_id, amount=amount,
                                currency="USD", received_at=datetime.now(UTC))
        await self.publish_event(event, str(event.deposit_id))
        return event

    async def withdraw(self, account_id: str, amount: Decimal) -> WithdrawalRequested:
        event = WithdrawalRequested(withdrawal_id=uuid.uuid4(), account_id=account_id, amount=amount,
                                    currency="USD", requested_at=datetime.now(UTC))
        await self.publish_event(event, str(event.withdrawal_id))
        return event
