"""Fixtures: an isolated vhost and database per test session, and in-process services."""

from __future__ import annotations

import importlib
import os

import pytest

from shared import topology
from shared.db import drop_database, ensure_database
from shared.settings import Settings, get_settings
from tests.support import PG_BASE, Bus, create_vhost, delete_vhost, unique_name


@pytest.fixture(scope="session")
def settings() -> Settings:
    """Point the whole session at a fresh vhost and database; remove both afterwards."""
    vhost = unique_name("m1-test")
    database = unique_name("m1_test")
    rabbit_url = create_vhost(vhost)
    env = {"M1_RABBITMQ_URL": rabbit_url, "M1_DATABASE_URL": f"{PG_BASE}/{database}",
           "M1_RELAY_POLL_SECONDS": "0.2", "M1_LOG_LEVEL": "WARNING",
           # No window closes by itself on the NYSE schedule in the middle of a test: the
           # schedule's own tests turn it on, with the service clock set.
           "M1_WINDOW_SCHEDULE": "false",
           # Tests deposit and withdraw at once: no settlement days nor deposit hold, unless a
           # test sets them (tests/integration/test_ledger_settlement.py).
           "M1_LEDGER_SETTLEMENT_DAYS": "0", "M1_LEDGER_DEPOSIT_HOLD_DAYS": "0",
           # nor does the ledger's daily job (fees, interest, dividends) run at New York
           # midnight: its tests run days by command
           "M1_LEDGER_DAY_SCHEDULE": "false"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    get_settings.cache_clear()
    yield get_settings()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    get_settings.cache_clear()
    import asyncio

    asyncio.run(drop_database(env["M1_DATABASE_URL"]))
    delete_vhost(vhost)


@pytest.fixture(scope="session")
async def topology_declared(settings: Settings) -> Settings:
    await ensure_database(settings.database_url)
    await topology.declare_all(settings.rabbitmq_url)
    return settings


@pytest.fixture
async def bus(topology_declared: Settings):
    async with Bus(topology_declared.rabbitmq_url) as b:
        yield b


def make_service(name: str, settings: Settings):
    """A fresh in-process instance of ``services.<name>`` bound to the test vhost/database."""
    module = importlib.import_module(f"services.{name}.app")
    return module.create_service(settings)


@pytest.fixture
def service_factory(topology_declared: Settings):
    def factory(name: str):
        return make_service(name, topology_declared)

    return factory
