"""PostgreSQL: database creation, one pool per process, and the migration runner.

Each service owns one schema named after it. Its pool's ``search_path`` points at that
schema, so a service's SQL never names another service's tables.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import asyncpg
from tenacity import AsyncRetrying, retry_if_exception_type, wait_exponential

log = logging.getLogger("m1.db")

SHARED_MIGRATIONS = Path(__file__).parent / "migrations"
_MIGRATION_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
# Errors after which trying again later can succeed (server restarting, network blip).
TRANSIENT_DB_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    ConnectionError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.SerializationError,
    asyncpg.DeadlockDetectedError,
    asyncpg.AdminShutdownError,
)


def split_dsn(url: str) -> tuple[str, str]:
    """``postgresql://u@h:5432/name`` -> (dsn of the ``postgres`` database, ``name``)."""
    head, _, tail = url.rpartition("/")
    name, sep, query = tail.partition("?")
    return f"{head}/postgres{sep}{query}", name


async def ensure_database(url: str) -> None:
    """Create the database named in ``url`` if it does not exist yet."""
    admin_dsn, name = split_dsn(url)
    conn = await asyncpg.connect(admin_dsn)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            try:
                await conn.execute(f'CREATE DATABASE "{name}"')
                log.info("database created", extra={"database": name})
            except asyncpg.DuplicateDatabaseError:
                pass  # created by a concurrent starter
    finally:
        await conn.close()


async def drop_database(url: str) -> None:
    admin_dsn, name = split_dsn(url)
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


async def create_pool(url: str, schema: str, *, min_size: int = 1, max_size: int = 10) -> asyncpg.Pool:
    """Open the service's pool, waiting with backoff while PostgreSQL is unreachable."""
    async for attempt in AsyncRetrying(
        retry=retry_if_exception_type(TRANSIENT_DB_ERRORS),
        wait=wait_exponential(multiplier=0.2, max=5),
        before_sleep=lambda s: log.warning("database unreachable, retrying", extra={"error": repr(s.outcome.exception())}),
    ):
        with attempt:
            return await asyncpg.create_pool(
                url,
                min_size=min_size,
                max_size=max_size,
                # No JIT: a batch statement's estimated cost passes the JIT threshold, and
                # compiling it (a few hundred ms each time) costs more than it runs.
                server_settings={"search_path": schema, "application_name": f"m1-{schema}", "jit": "off"},
            )
    raise AssertionError("unreachable")


def migration_files(directory: Path) -> list[tuple[str, Path]]:
    files = []
    for path in sorted(directory.glob("*.sql")):
        match = _MIGRATION_NAME.match(path.name)
        if not match:
            raise ValueError(f"migration file name must look like 0001_name.sql: {path}")
        files.append((match.group(1), path))
    return files


async def migrate(url: str, schema: str, directory: Path | None) -> list[str]:
    """Apply the shared messaging tables, then the service's numbered SQL files, once each.

    Runs under an advisory lock, one transaction per file, so concurrent starters are safe.
    Returns the names of the files applied now.
    """
    await ensure_database(url)
    conn = await asyncpg.connect(url)
    applied: list[str] = []
    try:
        await conn.execute("SELECT pg_advisory_lock(hashtext('m1.migrate.' || $1))", schema)
        await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        await conn.execute(f'SET search_path TO "{schema}"')
        await conn.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                   component text NOT NULL,
                   version   text NOT NULL,
                   name      text NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now(),
                   PRIMARY KEY (component, version))"""
        )
        done = {(r["component"], r["version"]) for r in await conn.fetch("SELECT component, version FROM schema_migrations")}
        sets = [("shared", SHARED_MIGRATIONS)] + ([("service", directory)] if directory else [])
        for component, folder in sets:
            for version, path in migration_files(folder):
                if (component, version) in done:
                    continue
                async with conn.transaction():
                    await conn.execute(path.read_text())
                    await conn.execute(
                        "INSERT INTO schema_migrations (component, version, name) VALUES ($1, $2, $3)",
                        component, version, path.name,
                    )
                applied.append(f"{component}/{path.name}")
        await conn.execute("SELECT pg_advisory_unlock(hashtext('m1.migrate.' || $1))", schema)
    finally:
        await conn.close()
    return applied
