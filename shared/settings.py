"""Settings from the environment (prefix ``M1_``), defaulting to the local servers."""

from __future__ import annotations

from decimal import Decimal
from functools import lru_cache
from typing import Literal

from pydantic import Field, SecretStr
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

# How the notification email channel secures its SMTP session (M1_SMTP_TLS).
SmtpTls = Literal["none", "starttls", "tls"]


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
    # Allocations between two collections of the garbage collector's youngest generation in
    # a service process (Python's default is 700). A fills batch parses into hundreds of
    # thousands of objects; at 700 the collector ran so often that it took half the parse.
    gc_threshold: int = Field(default=50_000, ge=700)
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
    # A window still waiting for the ledger or the venue this long after it closed is logged
    # as overdue ("window overdue") and counted in m1_windows_overdue; looked for this often.
    window_overdue_seconds: float = 900.0
    window_watch_seconds: float = 60.0
    # Venue slippage in basis points: buys fill this much above the price, sells below. At
    # most the window's 5% price margin (services/window/domain.py SHARE_PRICE_MARGIN): an
    # order with price limits never trades when slippage alone takes it outside them.
    market_slippage_bps: int = Field(default=0, ge=0, le=500)
    # Notification email channel: the SMTP server and the sender address.
    smtp_host: str = "localhost"
    smtp_port: int = 1025
    smtp_from: str = "notifications@m1.local"
    # Its transport security: "none" (plain SMTP; aiosmtplib still upgrades when the server
    # offers STARTTLS), "starttls" (an attempt fails when the server offers no STARTTLS: never
    # sent in clear) or "tls" (implicit TLS, e.g. port 465). Any other value stops the start.
    smtp_tls: SmtpTls = "none"
    # A login only when a username is set. The password is a SecretStr: "**********" in reprs.
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    # A CA bundle (PEM file) to verify the relay's certificate with instead of the system trust
    # store. The certificate and host name are always verified.
    smtp_ca_file: str | None = None
    # Notification deliveries (webhook, email): how often the worker looks for due rows when
    # nothing woke it, how many attempts before a delivery is failed, and the retry backoff
    # (base * 2^(attempt-1) seconds, capped).
    notification_delivery_poll_seconds: float = 1.0
    notification_delivery_max_attempts: int = 8
    notification_retry_base_seconds: float = 2.0
    notification_retry_max_seconds: float = 3600.0
    # How long one webhook POST or SMTP session may take (seconds).
    notification_send_timeout: float = 10.0

    # Settlement (business days on the NYSE calendar): a sale's proceeds settle this many
    # sessions after the trade date (T+1), and a deposit can be withdrawn this many after it
    # was booked. Tests that deposit and withdraw at once set both to 0.
    ledger_settlement_days: int = 1
    ledger_deposit_hold_days: int = 6
    # How often the ledger looks for held withdrawals whose money has settled (seconds).
    ledger_settlement_poll_seconds: float = 60.0

    # Regulatory fees on every sell (each rounded up to the cent): SEC fee per $1,000,000 of
    # principal; FINRA trading activity fee per share, capped per trade.
    sec_fee_per_million: Decimal = Decimal("27.80")
    finra_taf_per_share: Decimal = Decimal("0.000166")
    finra_taf_max: Decimal = Decimal("8.30")
    # Monthly platform fee, waived when the account's day-end value reached the threshold on
    # at least one day of the month.
    platform_fee: Decimal = Decimal("3.00")
    platform_fee_waiver: Decimal = Decimal("10000.00")
    # Annual interest rate on plus accounts' uninvested cash (accrued daily, actual/365, paid monthly).
    plus_cash_interest_rate: Decimal = Decimal("0.04")
    # The ledger runs its daily job (dividends, interest, fees) for each finished day by itself
    # (off: only by the ``ledger.day.run`` command); how often it checks (seconds).
    ledger_day_schedule: bool = True
    ledger_day_poll_seconds: float = 300.0

    # Margin (PRODUCT.md "Margin (borrow)"). Rates are decimal fractions.
    # Share of the eligible market value that can be borrowed (a security's own initial
    # requirement replaces 1 - this share for it).
    margin_borrow_share: Decimal = Decimal("0.40")
    # Market value of positions needed to borrow at all.
    margin_minimum_invested: Decimal = Decimal("2000.00")
    # A borrow is refused while one security is more than this share of the market value.
    margin_max_concentration: Decimal = Decimal("0.60")
    # Maintenance: house rate, the regulatory floor no rate goes under, and the hard floor
    # (equity under this share of the market value liquidates at once, call or not).
    margin_maintenance_rate: Decimal = Decimal("0.30")
    margin_regulatory_minimum: Decimal = Decimal("0.25")
    margin_hard_floor: Decimal = Decimal("0.25")
    # Business days (NYSE sessions) to meet a call; liquidation sells this much more than the
    # exact shortfall / maintenance rate (a fraction: 0.05 = 5% more).
    margin_call_days: int = 3
    margin_liquidation_buffer: Decimal = Decimal("0.05")
    # A withdrawal may not leave the loan above this share of the account's value.
    margin_withdrawal_max_loan: Decimal = Decimal("0.40")
    # Annual interest on the loan, by plan (accrued daily, actual/365, charged monthly).
    margin_rate_plus: Decimal = Decimal("0.0725")
    margin_rate_basic: Decimal = Decimal("0.0875")
    # The margin service checks call deadlines and runs each finished day's interest by itself
    # (off: only by the margin.calls.check / margin.interest.accrue commands); how often (s).
    margin_schedule: bool = True
    margin_schedule_poll_seconds: float = 60.0

    def port_for(self, service: str) -> int:
        return self.http_port or SERVICE_PORTS[service] + self.http_port_offset


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
