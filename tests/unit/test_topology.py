"""The broker topology as declared in shared/topology.py: every rule a queue must follow."""

from __future__ import annotations

import re

import pytest
from faststream.rabbit import QueueType

from shared import topology
from shared.topology import DEAD_LETTER_EXCHANGE, DELIVERY_LIMIT, QUEUES, SERVICES, dlq_name

QUEUE_NAME = re.compile(r"^(?P<service>[a-z]+)\.[a-z][a-z0-9-]*$")


def by_name(spec) -> str:
    return spec.name


@pytest.mark.parametrize("spec", QUEUES, ids=by_name)
def test_every_consumer_queue_is_a_durable_quorum_queue(spec):
    queue = spec.rabbit_queue()  # what FastStream declares when it subscribes
    assert queue.durable
    assert queue.arguments["x-queue-type"] == QueueType.QUORUM.value == "quorum"
    assert spec.arguments["x-queue-type"] == "quorum"  # what topology.declare uses


@pytest.mark.parametrize("spec", QUEUES, ids=by_name)
def test_every_consumer_queue_dead_letters_to_its_own_services_dlq(spec):
    assert spec.arguments["x-dead-letter-exchange"] == DEAD_LETTER_EXCHANGE
    # The DLQ of a service is bound to the dead-letter exchange with the service's name.
    assert spec.arguments["x-dead-letter-routing-key"] == spec.service
    assert spec.dlq == dlq_name(spec.service) == f"{spec.service}.dlq"


@pytest.mark.parametrize("spec", QUEUES, ids=by_name)
def test_every_consumer_queue_has_a_delivery_limit(spec):
    assert spec.arguments["x-delivery-limit"] == DELIVERY_LIMIT
    assert DELIVERY_LIMIT > 1
    assert spec.rabbit_queue().arguments["x-delivery-limit"] == DELIVERY_LIMIT


@pytest.mark.parametrize("spec", QUEUES, ids=by_name)
def test_queue_names_read_service_dot_what(spec):
    match = QUEUE_NAME.match(spec.name)
    assert match, spec.name
    assert match["service"] == spec.service
    assert spec.service in SERVICES


@pytest.mark.parametrize("spec", QUEUES, ids=by_name)
def test_every_queue_is_bound_to_a_known_exchange_by_at_least_one_key(spec):
    assert spec.exchange in (topology.EVENTS_EXCHANGE, topology.COMMANDS_EXCHANGE)
    assert spec.bindings
    assert all(key for key in spec.bindings)


def test_queue_names_are_unique():
    names = [q.name for q in QUEUES]
    assert len(names) == len(set(names))


@pytest.mark.parametrize("service", SERVICES)
def test_every_service_has_a_dlq_and_a_commands_queue(service):
    assert dlq_name(service) == f"{service}.dlq"
    assert dlq_name(service) not in {q.name for q in QUEUES}  # a DLQ is never a consumer queue
    commands = [q for q in topology.queues_of(service) if q.exchange == topology.COMMANDS_EXCHANGE]
    assert [q.name for q in commands] == [f"{service}.commands"]
    assert commands[0].bindings == (f"{service}.#",)


async def test_declare_creates_a_dlq_bound_for_every_service_and_every_queue_with_its_arguments():
    """Walks ``declare`` against a recording channel, so the real declaration is what is checked."""

    class Recorder:
        def __init__(self) -> None:
            self.exchanges: dict[str, str] = {}
            self.queues: dict[str, dict] = {}
            self.bindings: list[tuple[str, str, str]] = []
            self.unbound: list[tuple[str, str, str]] = []

        async def declare_exchange(self, name, kind, durable):
            assert durable
            self.exchanges[name] = kind
            return name

        async def declare_queue(self, name, durable=False, arguments=None, passive=False):
            if passive:
                assert name in self.queues  # declared before, with its arguments
            else:
                assert durable
                self.queues[name] = arguments
            recorder = self

            class Queue:
                async def bind(self, exchange, routing_key):
                    recorder.bindings.append((name, exchange, routing_key))

                async def unbind(self, exchange, routing_key):
                    recorder.unbound.append((name, exchange, routing_key))

            return Queue()

    channel = Recorder()
    await topology.declare(channel)
    for service in SERVICES:
        assert channel.queues[dlq_name(service)] == {"x-queue-type": "quorum"}
        assert (dlq_name(service), DEAD_LETTER_EXCHANGE, service) in channel.bindings
    for spec in QUEUES:
        assert channel.queues[spec.name] == spec.arguments
        for key in spec.bindings:
            assert (spec.name, spec.exchange, key) in channel.bindings
    # bindings of earlier releases are removed, after everything else is declared
    assert channel.unbound == list(topology.RETIRED_BINDINGS)
    assert not set(channel.unbound) & set(channel.bindings)
