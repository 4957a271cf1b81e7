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
        collation = await conn.fetchval("SELECT datcollate FROM pg_database WHERE datname = $1", name)
        if collation is not None and collation not in ("C", "POSIX"):
            log.warning("database collation is not C: sorts and indexes of text keys are slower",
                        extra={"database": name, "collation": collation})
        if collation is None:
            try:
                # Byte order for text: ids, symbols and book names compare with memcmp and
                # sort with abbreviated keys (a locale's collation sorts a million account
                # ids 2.4 times slower), and indexes do not depend on the C library's locale
                # data. Character classes (LC_CTYPE) stay the server's.
                await conn.execute(f'CREATE DATABASE "{name}" TEMPLATE template0 ENCODING \'UTF8\' LC_COLLATE \'C\'')
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


# Memory a sort or hash of a bulk statement may use before it spills to disk: a window's
# million intents sorted by account with 4 MB (the server's default) wrote 700 MB of
# temporary files. Set per transaction, for the statements that need it only.
BULK_WORK_MEM = "256MB"


async def bulk_memory(conn: asyncpg.Connection) -> None:
    """For the rest of the transaction, let each sort and hash use ``BULK_WORK_MEM``."""
    await conn.execute(f"SET LOCAL work_mem = '{BULK_WORK_MEM}'")


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
