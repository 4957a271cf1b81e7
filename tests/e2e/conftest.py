"""The whole system as processes, on a vhost and database of its own."""

from __future__ import annotations

import asyncio
import socket

import pytest

from m1.client import Client
from m1.runner import Supervisor, migrate_all
from shared.db import drop_database
from shared.settings import Settings
from shared.topology import SERVICES
from tests.support import PG_BASE, create_vhost, delete_vhost, unique_name


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def system(tmp_path_factory):
    vhost, database = unique_name("m1-e2e"), unique_name("m1_e2e")
    settings = Settings(rabbitmq_url=create_vhost(vhost), database_url=f"{PG_BASE}/{database}")
    asyncio.run(migrate_all(settings))
    log_dir = tmp_path_factory.mktemp("logs")
    supervisor = Supervisor(settings, list(SERVICES), log_dir, ports={n: free_port() for n in SERVICES},
                            env={"M1_RELAY_POLL_SECONDS": "0.2", "M1_LOG_LEVEL": "INFO",
                                 "M1_WINDOW_SCHEDULE": "false",  # windows close by command only
                                 # scenarios withdraw right after depositing and selling
                                 "M1_LEDGER_SETTLEMENT_DAYS": "0", "M1_LEDGER_DEPOSIT_HOLD_DAYS": "0",
                                 "M1_LEDGER_DAY_SCHEDULE": "false"})  # days run by command
    supervisor.start()
    try:
        failed = supervisor.wait_healthy(timeout=90)
        assert not failed, f"not healthy: {failed}; logs in {log_dir}"
        supervisor.log_dir = log_dir
        yield supervisor
    finally:
        supervisor.stop()
        asyncio.run(drop_database(settings.database_url))
        delete_vhost(vhost)


@pytest.fixture
async def client(system):
    async with Client(system.settings) as c:
        yield c
