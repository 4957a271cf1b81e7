"""Settings from the environment (prefix ``M1_``), defaulting to the local servers."""

from __future__ import annotations

from functools import lru_cache

from pydantic_settings import BaseSettings, SettingsConfigDict

# One HTTP port per service for /health and /metrics (M1_HTTP_PORT overrides in containers).
SERVICE_PORTS: dict[str, int] = {
    "ledger": 8101,
    "pie": 8102,
    "order": 8103,
    "window": 8104,
    "margin": 8105,
    "notification": 8106,
    "market": 8107,
}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="M1_", extra="ignore")

    rabbitmq_url: str = "amqp://guest:guest@127.0.0.1:5672/"
    database_url: str = "postgresql://postgres@127.0.0.1:5432/m1"
    log_level: str = "INFO"
    http_host: str = "127.0.0.1"
    # 0 means "the service's default port from SERVICE_PORTS" (plus http_port_offset).
    http_port: int = 0
    # Added to every default port: lets a second system (a test run, a demo) run beside one
    # already listening on 8101-8107.
    http_port_offset: int = 0
    # Messages a consumer may hold unacknowledged at once.
    prefetch: int = 64
    # How often the outbox relay looks for rows even when nothing woke it (seconds).
    relay_poll_seconds: float = 1.0
    # How long a CLI request waits for the service's answer (seconds).
    request_timeout: float = 15.0
    # Accounts per window fills batch (one ledger entry and one message per batch).
    window_fill_batch_accounts: int = 2000
    # The window service closes windows on the NYSE schedule (off: only by command).
    window_schedule: bool = True
    # How often the window service checks whether a scheduled window is due (seconds).
    window_schedule_poll_seconds: float = 15.0
    # Venue slippage in basis points: buys fill this much above the price, sells below.
    market_slippage_bps: int = 0
    # Notification email channel: the SMTP server and the sender address.
    smtp_host: str = "localhost"
    smtp_port: int = 1025
    smtp_from: str = "notifications@m1.local"
    # Notification deliveries (webhook, email): how often the worker looks for due rows when
    # nothing woke it, how many attempts before a delivery is failed, and the retry backoff
    # (base * 2^(attempt-1) seconds, capped).
    notification_delivery_poll_seconds: float = 1.0
    notification_delivery_max_attempts: int = 8
    notification_retry_base_seconds: float = 2.0
    notification_retry_max_seconds: float = 3600.0
    # How long one webhook POST or SMTP session may take (seconds).
    notification_send_timeout: float = 10.0

    def port_for(self, service: str) -> int:
        return self.http_port or SERVICE_PORTS[service] + self.http_port_offset


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
