"""The frame every service runs in: broker, pool, migrations, outbox relay, health, metrics.

A service module builds one ``Service``, registers handlers with ``service.consume``, and
exposes ``app = service.app()``. ``python -m services.<name>`` runs it with uvicorn, which
serves ``/health`` (broker and database reachable) and ``/metrics`` (Prometheus) beside the
consumers, and stops them cleanly on SIGINT/SIGTERM.
"""

from __future__ import annotations

import asyncio
import gc
import uuid
import signal
import sys
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import aio_pika
import asyncpg
from faststream.asgi import AsgiFastStream, AsgiResponse, get
from faststream.rabbit import Channel, RabbitBroker
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from tenacity import AsyncRetrying, retry_if_exception_type, wait_exponential

from shared import dead_letters, topology
from shared.clock import Clock
from shared.db import create_pool, migrate
from shared.logs import setup_logging
from shared.messaging import Consumer, OutboxRelay, Tx, write_outbox
from shared.settings import Settings, get_settings

ReadyHook = Callable[["Service"], Awaitable[None]]


def tune_gc(threshold: int) -> None:
    """Set up the garbage collector of a service process once its code is loaded: what
    exists now (modules, the app, its models) is frozen out of every later collection, and
    the youngest generation is collected every ``threshold`` allocations instead of 700.
    Messages of tens of thousands of rows parse into as many objects, and the collector
    traversed everything alive each time its older generations filled up."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(threshold, older, oldest)


def service_factory(name: str, app_file: str, register: Callable[["Service"], None]
                    ) -> Callable[[Settings | None], "Service"]:
    """``create_service(settings=None)`` for a service package: its migrations sit beside
    ``app_file``; ``register`` adds its handlers. Tests call it for fresh instances."""

    def create_service(settings: Settings | None = None) -> Service:
        service = Service(name, Path(app_file).parent / "migrations", settings)
        register(service)
        return service

    return create_service


class Service:
    def __init__(self, name: str, migrations: Path, settings: Settings | None = None) -> None:
        self.name = name
        self.migrations = migrations
        self.settings = settings or get_settings()
        self.log = setup_logging(name, self.settings.log_level)
        self.clock = Clock.from_env()
        self.broker = RabbitBroker(
            self.settings.rabbitmq_url,
            logger=None,  # one JSON line per message comes from Consumer; FastStream's access log costs ~30%
            default_channel=Channel(prefetch_count=self.settings.prefetch, publisher_confirms=True),
            graceful_timeout=10.0,
            apply_types=False,  # handlers take the raw message; see Consumer._subscribe
        )
        self.consumer = Consumer(name, self.broker, self.log, self.clock)
        self.handler = self.consumer.handler
        self.pool: asyncpg.Pool | None = None
        self.relay: OutboxRelay | None = None
        self._ready_hooks: list[ReadyHook] = []
        self._stop_hooks: list[ReadyHook] = []
        self._background: list[asyncio.Task] = []
        dead_letters.register(self)  # list, read and replay its refused messages (m1 dead-letters)

    def on_ready(self, hook: ReadyHook) -> ReadyHook:
        """Run ``hook(service)`` once the pool, topology and broker are up."""
        self._ready_hooks.append(hook)
        return hook

    def on_stop(self, hook: ReadyHook) -> ReadyHook:
        """Run ``hook(service)`` at shutdown, before the relay and the pool close (stop
        background work started by an ``on_ready`` hook)."""
        self._stop_hooks.append(hook)
        return hook

    def every(self, what: str, seconds: float, job: ReadyHook, *, at_start: bool = True) -> None:
        """Run ``job(service)`` in the background every ``seconds`` from when the service is
        up (the first time at once, or after one period when not ``at_start``) until it
        stops. A failure is logged and tried again the next time; the stop cancels the loop
        (a job cut off mid-transaction is rolled back) before the relay and the pool close."""

        async def loop() -> None:
            if not at_start:
                await asyncio.sleep(seconds)
            while True:
                try:
                    await job(self)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    self.log.exception(f"{what} failed; trying again in {seconds:g} s")
                await asyncio.sleep(seconds)

        async def start(service: Service) -> None:
            self._background.append(asyncio.create_task(loop(), name=f"{self.name}: {what}"))

        self.on_ready(start)

    async def _stop_background(self) -> None:
        tasks, self._background = self._background, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            try:
                await task
            except asyncio.CancelledError:
                pass
            except Exception:
                self.log.exception("background task failed")

    async def _declare_topology(self) -> None:
        async for attempt in AsyncRetrying(
            retry=retry_if_exception_type((OSError, ConnectionError, aio_pika.exceptions.AMQPConnectionError)),
            wait=wait_exponential(multiplier=0.2, max=5),
            before_sleep=lambda s: self.log.warning("broker unreachable, retrying",
                                                    extra={"error": repr(s.outcome.exception())}),
        ):
            with attempt:
                await topology.declare_all(self.settings.rabbitmq_url)

    @asynccontextmanager
    async def lifespan(self):
        applied = await migrate(self.settings.database_url, self.name, self.migrations)
        if applied:
            self.log.info("migrations applied", extra={"applied": applied})
        self.pool = await create_pool(self.settings.database_url, self.name)
        self.consumer.pool = self.pool
        await self._declare_topology()
        self.relay = OutboxRelay(self.pool, self.broker, self.log, self.name, poll_seconds=self.settings.relay_poll_seconds)
        self.consumer.relay = self.relay
        try:
            yield
        finally:
            await self._stop_background()
            for hook in reversed(self._stop_hooks):
                try:
                    await hook(self)
                except Exception:
                    self.log.exception("stop hook failed")
            await self.relay.stop()
            await self.pool.close()
            self.log.info("stopped")

    async def _after_startup(self) -> None:
        self.relay.start()
        for hook in self._ready_hooks:
            await hook(self)
        self.log.info("started", extra={"queues": [q.name for q in topology.queues_of(self.name)],
                                        "port": self.settings.port_for(self.name)})

    def app(self) -> AsgiFastStream:
        service = self
        self.consumer.build()

        @get(include_in_schema=False)
        async def health(scope) -> AsgiResponse:
            checks = {"broker": await service.broker.ping(timeout=2.0), "database": False}
            if service.pool is not None:
                try:
                    async with asyncio.timeout(2.0):
                        checks["database"] = await service.pool.fetchval("SELECT true")
                except Exception:
                    checks["database"] = False
            healthy = all(checks.values())
            body = ('{"status":"%s","broker":%s,"database":%s}' % (
                "ok" if healthy else "unhealthy", str(checks["broker"]).lower(), str(checks["database"]).lower()))
            return AsgiResponse(body.encode(), 200 if healthy else 503, headers={"content-type": "application/json"})

        @get(include_in_schema=False)
        async def metrics(scope) -> AsgiResponse:
            return AsgiResponse(generate_latest(), 200, headers={"content-type": CONTENT_TYPE_LATEST})

        return AsgiFastStream(
            self.broker,
            asgi_routes=[("/health", health), ("/metrics", metrics)],
            lifespan=self.lifespan,
            after_startup=[self._after_startup],
            logger=None,
        )

    @asynccontextmanager
    async def emitting(self, origin: str):
        """One transaction that may emit events outside any incoming message (start-up work,
        schedules): ``async with service.emitting("schedule") as tx: ... tx.emit(event)``.
        The events go through the outbox like any handler's."""
        message_id = f"{self.name}:{origin}:{uuid.uuid4()}"
        async with self.pool.acquire() as conn, conn.transaction():
            tx = Tx(conn, self.name, message_id, message_id, origin, self.clock.now())
            yield tx
            await write_outbox(conn, message_id, tx.outgoing)
        self.relay.wake()

    @asynccontextmanager
    async def running(self):
        """Run the service in this process (consumers, relay, hooks) until the block exits.
        Integration tests use it; production runs ``run()``."""
        self.consumer.build()
        async with self.lifespan():
            await self.broker.start()
            await self._after_startup()
            try:
                yield self
            finally:
                await self.broker.stop()

    def run(self) -> None:
        """Serve the app (consumers + HTTP) until SIGINT/SIGTERM.

        uvicorn stops gracefully on SIGTERM, restores the previous handler and raises the
        signal again; this handler turns that into exit status 0, which is what container
        runtimes and supervisors expect of a clean stop.
        """
        app = self.app()
        tune_gc(self.settings.gc_threshold)
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        asyncio.run(app.run(run_extra_options={
            "host": self.settings.http_host,
            "port": self.settings.port_for(self.name),
            "log_config": None,
            "access_log": "false",
        }))
