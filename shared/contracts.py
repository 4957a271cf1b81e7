"""Every message on the bus, as a pydantic v2 model.

Rules for all contracts:
- money travels as decimal strings (``"123.45"``), never JSON numbers: a float cannot carry a
  cent exactly. Cash has at most 2 decimals, share quantities at most 5, prices at most 6.
- a message's routing key is its ``TYPE``; the AMQP ``type`` property carries it too and the
  ``x-schema-version`` header carries ``VERSION``.
- models are frozen and refuse unknown fields, so a typo never passes silently.

The funding events at the top are the **fixed** contract with the bank (docs/contracts.md).
"""

from __future__ import annotations

import re
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Literal
from uuid import UUID

from pydantic import (AwareDatetime, BaseModel, ConfigDict, Field, GetPydanticSchema, StringConstraints,
                      ValidationError, WithJsonSchema, model_validator)
from pydantic_core import ErrorDetails, core_schema

# ---------------------------------------------------------------- scalar types

AccountId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
Symbol = Annotated[str, StringConstraints(pattern=r"^[A-Z][A-Z0-9.]{0,9}$")]

_DECIMAL_TEXT = re.compile(r"^-?\d+(\.\d+)?$")

# The two ways a decimal field is validated (services/..., docs/contracts.md "Money"): a
# well-formed decimal string takes the fast way, checked by pydantic-core's own string and
# decimal validators (no Python per value: a fills batch carries tens of thousands); anything
# else takes the checked way, our Python parser, whose error says what is wrong. A refused
# value fails both, and ``decimal_errors`` keeps only the checked way's error.
_FAST, _CHECKED = "fast decimal", "decimal"


def _decimal(places: int, *, positive: bool = False, non_negative: bool = False, maximum: Decimal | None = None):
    """A Decimal that arrives as a plain decimal string with at most ``places`` decimals."""

    def parse(value: Any) -> Decimal:
        if isinstance(value, Decimal):
            text = format(value, "f")
        elif isinstance(value, str):
            text = value.strip()
        else:
            raise ValueError("must be a decimal string such as \"12.34\", not a JSON number")
        if not _DECIMAL_TEXT.match(text):
            raise ValueError(f"not a plain decimal string: {value!r}")
        try:
            number = Decimal(text)
        except InvalidOperation as exc:  # pragma: no cover - the regex already guards
            raise ValueError(f"not a decimal: {value!r}") from exc
        decimals = len(text.partition(".")[2])
        if decimals > places:
            raise ValueError(f"at most {places} decimal places allowed, got {decimals}")
        if positive and number <= 0:
            raise ValueError("must be positive")
        if non_negative and number < 0:
            raise ValueError("must not be negative")
        if maximum is not None and number > maximum:
            raise ValueError(f"must be at most {maximum}")
        return number

    pattern = rf"^-?\d+(\.\d{{1,{places}}})?$"
    fast = core_schema.chain_schema([
        core_schema.str_schema(pattern=pattern, strict=True),
        core_schema.decimal_schema(gt=Decimal(0) if positive else None, ge=Decimal(0) if non_negative else None,
                                   le=maximum)])
    schema = core_schema.union_schema(
        [(fast, _FAST), (core_schema.no_info_plain_validator_function(parse), _CHECKED)], mode="left_to_right",
        serialization=core_schema.plain_serializer_function_ser_schema(lambda d: format(d, "f"), when_used="json"))
    bounds = "; positive" if positive else "; not negative" if non_negative else ""
    bounds += f"; at most {maximum}" if maximum is not None else ""
    json_schema = {"type": "string", "pattern": pattern,
                   "description": f"a decimal string with at most {places} decimals{bounds}"}
    return [GetPydanticSchema(lambda _source, _handler: schema), WithJsonSchema(json_schema, mode="validation")]


def decimal_errors(exc: ValidationError) -> list[ErrorDetails]:
    """``exc.errors()`` as the contracts mean them: of a refused decimal, only our parser's
    error (why the value is refused), at the field's own location."""
    out = []
    for err in exc.errors(include_url=False):
        loc = err["loc"]
        if loc and loc[-1] == _FAST:
            continue
        if loc and loc[-1] == _CHECKED:
            err = {**err, "loc": loc[:-1]}
        out.append(err)
    return out


Cash = Annotated[Decimal, *_decimal(2)]
PositiveCash = Annotated[Decimal, *_decimal(2, positive=True)]
FundingAmount = Annotated[Decimal, *_decimal(2, positive=True, maximum=Decimal("1000000000.00"))]
Quantity = Annotated[Decimal, *_decimal(5)]
Price = Annotated[Decimal, *_decimal(6, positive=True)]


class AccountKind(StrEnum):
    INDIVIDUAL = "individual"
    JOINT = "joint"
    TRUST = "trust"
    TRADITIONAL_IRA = "traditional_ira"
    ROTH_IRA = "roth_ira"
    SEP_IRA = "sep_ira"
    CUSTODIAL = "custodial"


class Plan(StrEnum):
    BASIC = "basic"
    PLUS = "plus"


class Side(StrEnum):
    BUY = "buy"
    SELL = "sell"


class IntentSource(StrEnum):
    LIQUIDATION = "liquidation"
    ORDER = "order"
    REBALANCE = "rebalance"
    AUTO_INVEST = "auto_invest"


class Message(BaseModel):
    """Base of every contract. ``TYPE`` is the routing key, ``VERSION`` the schema version."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    TYPE: ClassVar[str]
    VERSION: ClassVar[int] = 1


# ---------------------------------------------------------------- funding (fixed contract)


class DepositReceived(Message):
    TYPE: ClassVar[str] = "funding.deposit.received"
    deposit_id: UUID
    account_id: AccountId
    amount: FundingAmount
    currency: Literal["USD"]
    received_at: AwareDatetime


class WithdrawalRequested(Message):
    TYPE: ClassVar[str] = "funding.withdrawal.requested"
    withdrawal_id: UUID
    account_id: AccountId
    amount: FundingAmount
    currency: Literal["USD"]
    requested_at: AwareDatetime


# ---------------------------------------------------------------- ledger


class OpenAccount(Message):
    TYPE: ClassVar[str] = "ledger.account.open"
    account_id: AccountId
    kind: AccountKind = AccountKind.INDIVIDUAL
    plan: Plan = Plan.BASIC


class AccountOpened(Message):
    TYPE: ClassVar[str] = "ledger.account.opened"
    account_id: AccountId
    kind: AccountKind
    plan: Plan
    opened_at: datetime


class GetAccount(Message):
    """Query: the ledger's balances for one account."""

    TYPE: ClassVar[str] = "ledger.account.get"
    account_id: AccountId


class AccountBalances(Message):
    TYPE: ClassVar[str] = "ledger.account.balances"
    account_id: AccountId
    kind: AccountKind
    plan: Plan
    cash: Cash
    positions: dict[Symbol, Quantity]
    version: int


class DepositBooked(Message):
    TYPE: ClassVar[str] = "ledger.deposit.booked"
    account_id: AccountId
    deposit_id: UUID
    amount: PositiveCash
    cash: Cash
    booked_at: datetime


class WithdrawalBooked(Message):
    TYPE: ClassVar[str] = "ledger.withdrawal.booked"
    account_id: AccountId
    withdrawal_id: UUID
    amount: PositiveCash
    cash: Cash
    booked_at: datetime


class WithdrawalPending(Message):
    """A withdrawal the ledger holds: larger than the account's cash, until sells raise the
    ``shortfall`` (the pie service sells, or refuses with ``pie.withdrawal.refused``); or,
    with ``shortfall`` 0, within the cash but waiting for sale proceeds to settle. Paid out
    once the cash is there; the pie keeps the amount back from auto-invest until then.

    ``cash`` is what the withdrawal may count on: the balance less deposits on hold, earlier
    held withdrawals and the cash held for frozen windows' buys; ``shortfall`` is the amount
    less that cash. Held, the withdrawal comes before any later window's buys at the ledger
    (``ledger.window.hold``), so the pie sells the shortfall and no more."""

    TYPE: ClassVar[str] = "ledger.withdrawal.pending"
    account_id: AccountId
    withdrawal_id: UUID
    amount: PositiveCash
    cash: Cash
    shortfall: Annotated[Decimal, *_decimal(2, non_negative=True)]
    requested_at: datetime


class FundingRejected(Message):
    """A funding event for a known account that was refused; the holder is told why."""

    TYPE: ClassVar[str] = "ledger.funding.rejected"
    account_id: AccountId
    funding_type: str
    funding_id: str | None = None
    amount: str | None = None
    reason: str


class CashChanged(Message):
    TYPE: ClassVar[str] = "ledger.cash.changed"
    account_id: AccountId
    cash: Cash
    delta: Cash
    cause: Literal["deposit", "withdrawal", "fill", "dividend", "fee", "interest", "loan", "repayment", "adjustment"]
    cause_id: str
    # The account's ledger version after this change: consumers ignore older versions.
    version: int


class PositionChanged(Message):
    TYPE: ClassVar[str] = "ledger.position.changed"
    account_id: AccountId
    symbol: Symbol
    quantity: Quantity
    delta: Quantity
    version: int


class Fill(BaseModel):
    """One intent's share of a window's execution, allocated exactly."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    intent_id: UUID
    account_id: AccountId
    symbol: Symbol
    side: Side
    quantity: Quantity
    amount: Cash
    price: Price


class AccountFills(BaseModel):
    """One account's part of a booked fills batch: its fills of the window, with its cash,
    complete positions and version right after them."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    account_id: AccountId
    window_id: UUID
    fills: list[Fill]
    cash: Cash
    positions: dict[Symbol, Quantity]
    version: int
    booked_at: datetime


class FillsBooked(Message):
    """A batch of a window's fills booked by the ledger (one ``window.fills.batch``, many
    accounts): per account its fills, cash, positions and version after them. It is the only
    event of a fill. One message per batch, not per account: a million-intent window is a
    few dozen messages for every consumer, which handles each account's part in turn."""

    TYPE: ClassVar[str] = "ledger.fills.booked"
    VERSION: ClassVar[int] = 2
    window_id: UUID
    batch: int = Field(ge=0)
    booked_at: datetime
    accounts: list[AccountFills]


# ---------------------------------------------------------------- pie


class SliceSpec(BaseModel):
    """A slice is a security (``symbol``) or a nested pie (``pie``), with a whole-% target."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    target: int
    symbol: Symbol | None = None
    pie: PieSpec | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> SliceSpec:
        if (self.symbol is None) == (self.pie is None):
            raise ValueError("a slice holds exactly one of 'symbol' or 'pie'")
        return self


class PieSpec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    name: str = Field(min_length=1, max_length=100)
    slices: list[SliceSpec]


class SetPie(Message):
    TYPE: ClassVar[str] = "pie.pie.set"
    account_id: AccountId
    pie: PieSpec


class PieSet(Message):
    """An account's pie was set. ``version`` rises by one with each change of the account's
    pie (None from senders that predate it): a consumer keeps the newest."""

    TYPE: ClassVar[str] = "pie.pie.changed"
    account_id: AccountId
    pie: PieSpec
    version: int | None = Field(default=None, ge=1)


class Intent(BaseModel):
    """A wish to trade, collected by the window. Buys are in dollars; sells in dollars or shares."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    intent_id: UUID
    account_id: AccountId
    symbol: Symbol
    side: Side
    amount: PositiveCash | None = None
    quantity: Quantity | None = None
    source: IntentSource

    @model_validator(mode="after")
    def _amount_or_quantity(self) -> Intent:
        if (self.amount is None) == (self.quantity is None):
            raise ValueError("an intent has exactly one of 'amount' or 'quantity'")
        return self


class IntentsSubmitted(Message):
    TYPE: ClassVar[str] = "pie.intents.submitted"
    account_id: AccountId
    batch_id: UUID
    intents: list[Intent] = Field(min_length=1)


class GetPortfolio(Message):
    TYPE: ClassVar[str] = "pie.portfolio.get"
    account_id: AccountId


class SliceView(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    path: str
    symbol: Symbol | None
    depth: int
    target_pct: Decimal
    actual_pct: Decimal
    value: Cash
    quantity: Quantity | None


class HeldOutside(BaseModel):
    """Shares the account holds at a path that is no longer a slice of its pie: a removed
    slice whose sale is pending, or a delisted security's, kept until it trades again
    (``delisted``: the reason)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    path: str
    symbol: Symbol
    quantity: Quantity
    value: Cash
    delisted: str | None = None


class PortfolioView(Message):
    TYPE: ClassVar[str] = "pie.portfolio.view"
    account_id: AccountId
    pie_name: str | None
    cash: Cash
    pending_buys: Cash
    invested: Cash  # the slices' values and those held outside the pie
    total: Cash
    slices: list[SliceView]
    # The pie's securities the market has delisted: the pie needs adjustment (the holder
    # replaces them); automated trades leave them out.
    inactive: list[Symbol] = []
    needs_adjustment: bool = False
    outside: list[HeldOutside] = []


class SetSettings(Message):
    """Change an account's pie settings; a field left out (null) keeps its value, so a
    command with none of them answers the current settings."""

    TYPE: ClassVar[str] = "pie.settings.set"
    account_id: AccountId
    auto_invest: bool | None = None
    minimum_cash: Annotated[Decimal, *_decimal(2, non_negative=True)] | None = None
    dividends: Literal["cash", "reinvest"] | None = None


class AccountSettings(Message):
    TYPE: ClassVar[str] = "pie.settings.changed"
    account_id: AccountId
    auto_invest: bool
    minimum_cash: Cash
    dividends: Literal["cash", "reinvest"]


class ListModels(Message):
    """Query: the model pies shipped with the service."""

    TYPE: ClassVar[str] = "pie.models.list"


class ModelPie(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    key: str
    description: str
    pie: PieSpec


class ModelPies(Message):
    TYPE: ClassVar[str] = "pie.models.view"
    models: list[ModelPie]


class ApplyModel(Message):
    """Set a model pie (by its key) as the account's pie: a copy the holder may edit later."""

    TYPE: ClassVar[str] = "pie.model.apply"
    account_id: AccountId
    model: str = Field(min_length=1, max_length=100)


class Rebalance(Message):
    """Manual rebalance of the whole portfolio (``path`` empty) or of the pie at ``path``."""

    TYPE: ClassVar[str] = "pie.rebalance.request"
    account_id: AccountId
    path: str = ""
    top_level_only: bool = False


class PlannedTrade(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    path: str
    symbol: Symbol
    side: Side
    amount: PositiveCash


class RebalancePlanned(Message):
    TYPE: ClassVar[str] = "pie.rebalance.planned"
    account_id: AccountId
    batch_id: UUID | None  # None when nothing needs trading
    path: str
    top_level_only: bool
    trades: list[PlannedTrade]
    left_out: Cash  # buys under $1 not submitted
    estimated_gain: Cash


class CancelRebalance(Message):
    """Record that the window cancelled these intents of a rebalance batch (the ids the
    window's ``window.intents.cancel`` answered as cancelled)."""

    TYPE: ClassVar[str] = "pie.rebalance.cancel"
    account_id: AccountId
    batch_id: UUID
    intent_ids: list[UUID]


class WithdrawalRefused(Message):
    """The pie service cannot raise a pending withdrawal's shortfall (it exceeds what the
    account can withdraw); the ledger rejects the withdrawal with this reason."""

    TYPE: ClassVar[str] = "pie.withdrawal.refused"
    account_id: AccountId
    withdrawal_id: UUID
    amount: PositiveCash
    reason: str


class RaiseCash(Message):
    """Command: sell ``amount`` dollars from the account's most overweight slices in the next
    window (intents of ``source``, liquidation by default: the highest priority). Sent, for
    example, by the margin service to liquidate for a call. ``request_id`` makes it
    idempotent; the pie answers ``pie.cash.raising`` with what it submitted."""

    TYPE: ClassVar[str] = "pie.cash.raise"
    account_id: AccountId
    request_id: UUID
    amount: PositiveCash
    reason: str = Field(min_length=1, max_length=200)
    source: IntentSource = IntentSource.LIQUIDATION


class CashRaising(Message):
    """What the pie submitted for a ``RaiseCash`` (or to cover a negative cash balance):
    ``planned`` dollars of sells (less than ``amount`` when the holdings do not cover it)."""

    TYPE: ClassVar[str] = "pie.cash.raising"
    account_id: AccountId
    request_id: UUID
    amount: PositiveCash
    planned: Cash
    batch_id: UUID | None
    reason: str
    # The sells of ``batch_id`` (empty: nothing planned, or a pie from before they were sent):
    # a liquidation's own sells, so the margin service need not read every batch of intents.
    intent_ids: list[UUID] = []


class RebalanceCancelled(Message):
    TYPE: ClassVar[str] = "pie.rebalance.cancelled"
    account_id: AccountId
    batch_id: UUID
    cancelled: list[UUID]


# ---------------------------------------------------------------- window and market


class CloseWindow(Message):
    """Operator command: close the open window now."""

    TYPE: ClassVar[str] = "window.window.close"


class AbandonWindow(Message):
    """Operator command: stop a window that has sent no orders (it is ``holding``: the ledger
    has not answered its cash hold, say because the hold was dead-lettered). Its frozen
    intents carry over to the next window with ``reason``, each holder is told, and whatever
    cash the ledger holds for it is released. Replies ``window.window.view``."""

    TYPE: ClassVar[str] = "window.window.abandon"
    window_id: UUID
    reason: str = Field(min_length=1, max_length=200)


class WindowClosing(Message):
    TYPE: ClassVar[str] = "window.window.closing"
    window_id: UUID | None
    intents: int
    accounts: int
    orders: list[NetOrder]


class NetOrder(BaseModel):
    """What the window sends the venue for one security: the net of every account's intents.
    ``side`` and ``notional`` are the net of the dollar intents; ``shares`` is the net of the
    share-quantity intents, signed (positive buys shares, negative sells them). The venue
    trades both at one price; with shares in the order, the execution's side is that of the
    whole net at that price. With ``min_price`` and ``max_price`` (the window funded some of
    the order's intents at its last price), the venue does not trade the order at a price
    outside them: the order comes back in ``OrdersExecuted.halted`` and its intents carry
    over."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    symbol: Symbol
    side: Side
    notional: Cash
    shares: Quantity = Decimal("0")
    min_price: Price | None = None
    max_price: Price | None = None

    @model_validator(mode="after")
    def _limits(self) -> NetOrder:
        if (self.min_price is None) != (self.max_price is None):
            raise ValueError("an order has both price limits or neither")
        if self.min_price is not None and self.min_price > self.max_price:
            raise ValueError(f"min_price {self.min_price} is above max_price {self.max_price}")
        return self


class ExecuteOrders(Message):
    TYPE: ClassVar[str] = "market.orders.execute"
    window_id: UUID
    orders: list[NetOrder]


class Execution(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    symbol: Symbol
    side: Side
    quantity: Quantity
    price: Price
    amount: Cash


class OrdersExecuted(Message):
    TYPE: ClassVar[str] = "market.orders.executed"
    window_id: UUID
    executions: list[Execution]
    executed_at: datetime
    # Ordered securities the venue did not trade (halted, or priced outside the order's
    # limits), with the reason: their intents carry over to the next window.
    halted: dict[Symbol, str] = {}
    # Ordered securities the venue cannot trade at all (unknown, inactive), with the reason:
    # their intents are rejected.
    refused: dict[Symbol, str] = {}


class HaltSecurity(Message):
    """Operator command: halt one security until resumed."""

    TYPE: ClassVar[str] = "market.halt.set"
    symbol: Symbol
    reason: str = Field(default="trading halted in this security", min_length=1, max_length=200)


class ResumeSecurity(Message):
    TYPE: ClassVar[str] = "market.halt.lift"
    symbol: Symbol


class SetIndexLevel(Message):
    """The market index now and at the prior close: a fall of 7%, 13% or 20% trips the
    market-wide circuit breaker of level 1, 2 or 3."""

    TYPE: ClassVar[str] = "market.index.set"
    level: Price
    prior_close: Price


class HaltsView(Message):
    TYPE: ClassVar[str] = "market.halts.view"
    halts: dict[Symbol, str]
    # the market-wide halt in force, if any: its reason and when it ends
    market_wide: str | None = None
    until: datetime | None = None


class Residue(BaseModel):
    """What the firm account receives for one security so that the window's entry balances:
    ``quantity`` shares and ``amount`` dollars (either may be negative)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    symbol: Symbol
    quantity: Quantity
    amount: Cash


class FillsAllocated(Message):
    TYPE: ClassVar[str] = "window.fills.allocated"
    window_id: UUID
    executions: list[Execution]
    fills: list[Fill]
    residues: list[Residue]


class SetPrices(Message):
    TYPE: ClassVar[str] = "market.prices.set"
    prices: dict[Symbol, Price] = Field(min_length=1)


class PricesChanged(Message):
    TYPE: ClassVar[str] = "market.prices.changed"
    prices: dict[Symbol, Price]
    as_of: datetime


class SetSecurityActive(Message):
    """Operator command: delist a security (``active`` false: the venue no longer trades it
    and its price is no longer published) or list it again."""

    TYPE: ClassVar[str] = "market.security.set"
    symbol: Symbol
    active: bool
    reason: str = Field(default="delisted", min_length=1, max_length=200)


class SecurityStatusChanged(Message):
    """A security was delisted or listed again; ``price``: its last price."""

    TYPE: ClassVar[str] = "market.security.changed"
    symbol: Symbol
    active: bool
    reason: str | None
    price: Price
    changed_at: datetime


# A fill as it travels in a ``FillsBatch``: a row of plain values, decimals as text. A
# window's million fills are validated here without building a model per fill.
QuantityText = Annotated[str, StringConstraints(pattern=r"^\d{1,15}(\.\d{1,5})?$")]
CashText = Annotated[str, StringConstraints(pattern=r"^\d{1,14}(\.\d{1,2})?$")]
PriceText = Annotated[str, StringConstraints(pattern=r"^\d{1,12}(\.\d{1,6})?$")]
FillRow = tuple[UUID, AccountId, Symbol, Side, QuantityText, CashText, PriceText]
FILL_ROW = ("intent_id", "account_id", "symbol", "side", "quantity", "amount", "price")


class FillsBatch(Message):
    """A window's fills for a batch of accounts (many accounts per message; every fill of an
    account is in one batch). Batch 0 also carries the window's executions and residues (the
    street and firm legs). The ledger books each batch once as one balanced entry, through
    the window's clearing book, which nets to zero once all ``batches`` are booked.

    ``fills`` are rows in ``FILL_ROW`` order: intent id, account, symbol, side, quantity
    (shares, up to 5 decimals), amount (cash, 2 decimals) and price (up to 6 decimals)."""

    TYPE: ClassVar[str] = "window.fills.batch"
    VERSION: ClassVar[int] = 2
    window_id: UUID
    batch: int = Field(ge=0)
    batches: int = Field(ge=1)
    fills: list[FillRow]
    executions: list[Execution] = []
    residues: list[Residue] = []

    def fill_models(self) -> list[Fill]:
        """The rows as ``Fill`` models (for tests and small batches)."""
        return [Fill(**dict(zip(FILL_ROW, row))) for row in self.fills]


# An account's hold in a ``HoldWindowCash``: account and amount (cash, as text).
HoldRow = tuple[AccountId, CashText]


class HoldWindowCash(Message):
    """The window to the ledger, after it froze and funded a window and before it sends the
    net orders to the venue: per account with buys, the cash they take from the account's
    own cash (their cost less its sells' proceeds, as the window's funding counted them; 0
    when its sells pay for them all). The ledger holds that cash against withdrawals until
    it has booked the window's fills, and answers with ``ledger.window.held``."""

    TYPE: ClassVar[str] = "ledger.window.hold"
    window_id: UUID
    holds: list[HoldRow]


class WindowCashHeld(Message):
    """The ledger's answer to ``ledger.window.hold``: the window's cash is held. ``short``
    lists the accounts whose cash at the ledger (less held withdrawals and other windows'
    holds) is below what the window asked, with the cash they have: below zero when held
    withdrawals or a negative balance claim more than the balance, to be paid from the
    account's sells in the window before its buys. The window funds those accounts' buys
    again from that cash (plus their sells' proceeds) before it trades."""

    TYPE: ClassVar[str] = "ledger.window.held"
    window_id: UUID
    short: dict[AccountId, Cash] = {}


class ReleaseWindowCash(Message):
    """The window to the ledger: the window ended without fills to book (every order halted
    or refused, or nothing left to trade), so the cash held for it is free again. A window
    with fills releases each account's hold as its batch is booked, and the rest with the
    last batch."""

    TYPE: ClassVar[str] = "ledger.window.release"
    window_id: UUID


class CancelIntents(Message):
    """Cancel pending intents: the listed ids and/or every intent of a submitted batch. An
    intent already in a window (started) is not cancelled; the answer says why."""

    TYPE: ClassVar[str] = "window.intents.cancel"
    intent_ids: list[UUID] = []
    batch_id: UUID | None = None


class IntentsCancelled(Message):
    TYPE: ClassVar[str] = "window.intents.cancelled"
    cancelled: list[UUID]
    # intent id -> why it was not cancelled
    refused: dict[str, str] = {}


class GetWindow(Message):
    """Query: one window's status and summary."""

    TYPE: ClassVar[str] = "window.window.get"
    window_id: UUID


class WindowView(Message):
    TYPE: ClassVar[str] = "window.window.view"
    window_id: UUID
    status: str
    closed_at: datetime
    summary: dict[str, Any] | None


class ListWindows(Message):
    """Query: the latest windows, newest first. With ``unfinished``, only those still waiting
    for another service: ``holding`` (the ledger's cash hold), ``executing`` (the venue) or
    ``allocated`` with fills batches the ledger has not booked yet."""

    TYPE: ClassVar[str] = "window.window.list"
    unfinished: bool = False
    limit: int = Field(default=20, ge=1, le=500)


class WindowState(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    window_id: UUID
    status: str
    session: str | None
    closed_at: datetime
    # fills batches published to the ledger, and how many it has booked (None: the window
    # was allocated before the window counted them)
    batches: int | None
    booked_batches: int | None
    # what it waits for, in an operator's words; None once it is done
    waiting_for: str | None
    abandoned: str | None


class WindowList(Message):
    TYPE: ClassVar[str] = "window.window.listed"
    windows: list[WindowState]


class SetTradeWindow(Message):
    """The holder's choice of daily window (accounts under $25,000 equity on the basic plan
    trade in one; plus accounts and larger ones trade in both whatever they chose)."""

    TYPE: ClassVar[str] = "window.account.set_session"
    account_id: AccountId
    session: Literal["morning", "afternoon"]


class IntentsCarriedOver(Message):
    """Intents of one account that a window could not trade, waiting for the next window."""

    TYPE: ClassVar[str] = "window.intents.carried_over"
    account_id: AccountId
    window_id: UUID
    symbols: list[Symbol]
    intents: list[UUID]
    reason: str


class IntentsRejected(Message):
    """Intents of one account that a window dropped for good (e.g. a buy under $1 after
    funding), with the reason per intent."""

    TYPE: ClassVar[str] = "window.intents.rejected"
    account_id: AccountId
    window_id: UUID
    reasons: dict[str, str]


# ---------------------------------------------------------------- notification


class GetFeed(Message):
    TYPE: ClassVar[str] = "notification.feed.get"
    account_id: AccountId
    since: datetime | None = None
    limit: int = Field(default=100, ge=1, le=1000)


class FeedEntry(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    id: int
    kind: str
    message: str
    data: dict[str, Any]
    cause_id: str
    created_at: datetime


class Feed(Message):
    TYPE: ClassVar[str] = "notification.feed.view"
    account_id: AccountId
    entries: list[FeedEntry]


WebhookUrl = Annotated[str, StringConstraints(pattern=r"^https?://[^\s]+$", max_length=2000)]
EmailAddress = Annotated[str, StringConstraints(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$", max_length=254)]


class SetChannels(Message):
    """Replace an account's delivery channels (the log is always on): a channel left out is
    turned off. A webhook needs its signing secret."""

    TYPE: ClassVar[str] = "notification.channels.set"
    account_id: AccountId
    webhook_url: WebhookUrl | None = None
    webhook_secret: Annotated[str, StringConstraints(min_length=16, max_length=200)] | None = None
    email: EmailAddress | None = None

    @model_validator(mode="after")
    def _secret_with_webhook(self) -> SetChannels:
        if (self.webhook_url is None) != (self.webhook_secret is None):
            raise ValueError("a webhook needs both webhook_url and webhook_secret")
        return self


class GetChannels(Message):
    TYPE: ClassVar[str] = "notification.channels.get"
    account_id: AccountId


class ChannelsView(Message):
    """An account's channels; the webhook secret is never sent back, only whether it is set."""

    TYPE: ClassVar[str] = "notification.channels.view"
    account_id: AccountId
    webhook_url: str | None = None
    webhook_secret_set: bool = False
    email: str | None = None
    updated_at: datetime | None = None


DeliveryStatus = Literal["pending", "delivered", "failed"]


class GetDeliveries(Message):
    TYPE: ClassVar[str] = "notification.deliveries.get"
    account_id: AccountId
    status: DeliveryStatus | None = None
    limit: int = Field(default=100, ge=1, le=1000)


class DeliveryEntry(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    id: UUID
    feed_id: int
    kind: str
    channel: str
    status: DeliveryStatus
    attempts: int
    last_error: str | None
    next_attempt_at: datetime | None
    delivered_at: datetime | None
    created_at: datetime


class Deliveries(Message):
    TYPE: ClassVar[str] = "notification.deliveries.view"
    account_id: AccountId
    deliveries: list[DeliveryEntry]


class ResendDeliveries(Message):
    """Send an account's failed deliveries again (all of them, or those of ``ids``), each
    with a fresh set of attempts; replies ``Deliveries`` with the ones queued again."""

    TYPE: ClassVar[str] = "notification.deliveries.resend"
    account_id: AccountId
    ids: list[UUID] = []


# ---------------------------------------------------------------- order


class OrderStatus(StrEnum):
    """An order's state: ``pending`` (maybe waiting for its deposit) and ``carried_over`` (a
    halt sent it to the next window) are open; ``partially_executed`` is open while the rest
    is carried to the next window, else final (``OrderState.final`` says which); the other
    three are final, and an order ends in exactly one final state."""

    PENDING = "pending"
    CARRIED_OVER = "carried_over"
    CANCELLED = "cancelled"
    EXECUTED = "executed"
    PARTIALLY_EXECUTED = "partially_executed"
    REJECTED = "rejected"


class PlaceOrder(Message):
    """Command: buy or sell one slice (``symbol``) of the account's pie, by dollar ``amount``
    or share ``quantity``. A buy may bring its funding: ``deposit_id`` and ``deposit_amount``
    of a deposit made with it (the bank's ``funding.deposit.received`` with that id); the
    order waits for that deposit to be booked. Replies ``OrderView``; the order's id derives
    from the command's message id."""

    TYPE: ClassVar[str] = "order.order.place"
    account_id: AccountId
    symbol: Symbol
    side: Side
    amount: PositiveCash | None = None
    quantity: Quantity | None = None
    deposit_id: UUID | None = None
    deposit_amount: FundingAmount | None = None

    @model_validator(mode="after")
    def _amount_or_quantity(self) -> PlaceOrder:
        if (self.amount is None) == (self.quantity is None):
            raise ValueError("an order has exactly one of 'amount' or 'quantity'")
        if (self.deposit_id is None) != (self.deposit_amount is None):
            raise ValueError("a deposit with an order needs both deposit_id and deposit_amount")
        return self


class CancelOrder(Message):
    """Command: cancel an order until its window starts. Replies ``OrderView``: cancelled at
    once, or with ``cancel_requested`` while the window is asked (the outcome follows as
    ``order.order.changed``)."""

    TYPE: ClassVar[str] = "order.order.cancel"
    order_id: UUID


class OrderState(BaseModel):
    """One order as the order service knows it."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    order_id: UUID
    account_id: AccountId
    symbol: Symbol
    side: Side
    amount: Cash | None = None
    quantity: Quantity | None = None
    status: OrderStatus
    # what an open order waits for, in words (its deposit), else None
    waiting_for: str | None = None
    deposit_id: UUID | None = None
    deposit_amount: Cash | None = None
    cancel_requested: bool = False
    # what the window traded (final states executed / partially executed)
    filled_quantity: Quantity | None = None
    filled_amount: Cash | None = None
    price: Price | None = None
    window_id: UUID | None = None
    reason: str | None = None
    placed_at: datetime
    updated_at: datetime
    version: int
    # the order reached its one final state (``partially_executed`` is open while its rest is
    # carried to the next window); None from a producer that does not say
    final: bool | None = None
    # the order's current intent at the window (part 1 is the order's id; a partly filled
    # order's rest is the next part) and what that intent asks
    intent_id: UUID | None = None
    part: int | None = None
    rest_amount: Cash | None = None
    rest_quantity: Quantity | None = None


class OrderView(Message):
    TYPE: ClassVar[str] = "order.order.view"
    order: OrderState


class OrderChanged(Message):
    """Every change of an order, with its full state after it. ``change`` is one of placed,
    funded (its deposit was booked), cancel_requested, cancel_refused, carried_over,
    cancelled, executed, partially_executed, rejected."""

    TYPE: ClassVar[str] = "order.order.changed"
    account_id: AccountId
    change: str
    order: OrderState


class OrderRefused(Message):
    """A refused order request (place or cancel) of a known account, with the reason: the
    holder is told."""

    TYPE: ClassVar[str] = "order.order.refused"
    account_id: AccountId
    request: str
    reason: str


class GetOrder(Message):
    TYPE: ClassVar[str] = "order.order.get"
    order_id: UUID


class GetOrders(Message):
    TYPE: ClassVar[str] = "order.orders.get"
    account_id: AccountId
    limit: int = Field(default=100, ge=1, le=1000)


class Orders(Message):
    TYPE: ClassVar[str] = "order.orders.view"
    account_id: AccountId
    orders: list[OrderState]


class OrderIntentsSubmitted(IntentsSubmitted):
    """An order's intent (source ``order``) for the window; the window collects it like the
    pie's intents."""

    TYPE: ClassVar[str] = "order.intents.submitted"


# ---------------------------------------------------------------- ledger reports (statement, export, audit)


class GetStatement(Message):
    """Query: an account's statement for one calendar month (dates in America/New_York)."""

    TYPE: ClassVar[str] = "ledger.statement.get"
    account_id: AccountId
    month: Annotated[str, StringConstraints(pattern=r"^\d{4}-(0[1-9]|1[0-2])$")]


class Statement(Message):
    """An account's month: opening and closing cash and positions, every movement, holdings
    with cost and market value, and the cash that is settled, unsettled and withdrawable."""

    TYPE: ClassVar[str] = "ledger.statement.view"
    account_id: AccountId
    month: str
    period_start: datetime
    period_end: datetime
    opening: dict[str, Any]
    closing: dict[str, Any]
    movements: list[dict[str, Any]]
    holdings: list[dict[str, Any]]
    cash: dict[str, Any]


class ExportJournal(Message):
    """Operator query: the whole journal (customer and firm books) in an accounting format."""

    TYPE: ClassVar[str] = "ledger.journal.export"
    format: Literal["beancount"] = "beancount"


class JournalExport(Message):
    TYPE: ClassVar[str] = "ledger.journal.exported"
    format: str
    entries: int
    text: str


class AuditLedger(Message):
    """Operator query: recompute every balance from the journal and reconcile the books."""

    TYPE: ClassVar[str] = "ledger.audit.run"


class AuditReport(Message):
    TYPE: ClassVar[str] = "ledger.audit.report"
    ok: bool
    entries: int
    postings: int
    accounts: int
    kinds: dict[str, int]
    differences: list[str]


# ---------------------------------------------------------------- dividends, the ledger's day, gains


class AnnounceDividend(Message):
    """Operator command to the market: a security pays ``amount_per_share`` to the holders of
    record at ``ex_date`` (shares held before that day), paid on ``pay_date``."""

    TYPE: ClassVar[str] = "market.dividend.announce"
    symbol: Symbol
    amount_per_share: Price
    ex_date: date
    pay_date: date

    @model_validator(mode="after")
    def _pay_after_ex(self) -> AnnounceDividend:
        if self.pay_date < self.ex_date:
            raise ValueError("pay_date must not be before ex_date")
        return self


class DividendAnnounced(Message):
    """A dividend (``market.dividend.announced``): the ledger credits every holder's cash on the pay date."""

    TYPE: ClassVar[str] = "market.dividend.announced"
    symbol: Symbol
    amount_per_share: Price
    ex_date: date
    pay_date: date

    @model_validator(mode="after")
    def _pay_after_ex(self) -> DividendAnnounced:
        if self.pay_date < self.ex_date:
            raise ValueError("pay_date must not be before ex_date")
        return self


class RunLedgerDay(Message):
    """Run the ledger's daily job for ``day`` (America/New_York): record each account's
    day-end value, accrue interest on plus accounts' cash, pay the dividends due, and on the
    month's last day charge the platform fee and pay the month's interest. Each step is done
    once however often the day is run."""

    TYPE: ClassVar[str] = "ledger.day.run"
    day: date


class LedgerDayDone(Message):
    TYPE: ClassVar[str] = "ledger.day.done"
    day: date
    dividends_paid: list[str]
    dividend_accounts: int
    interest_accrued_accounts: int
    interest_paid_accounts: int
    platform_fee_accounts: int
    regulatory_fee_accounts: int = 0


class GetGains(Message):
    """Query: an account's realised gains of one calendar year (sales booked that year)."""

    TYPE: ClassVar[str] = "ledger.gains.get"
    account_id: AccountId
    year: int = Field(ge=1900, le=2999)


class RealisedGain(BaseModel):
    """One sale's closing of one tax lot (a sale closing three lots is three rows)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    sale_id: str
    symbol: Symbol
    quantity: Quantity
    acquired: date | None
    sold: date
    proceeds: Cash
    cost: Cash
    gain: Cash
    term: Literal["short", "long"]
    wash_sale: bool
    basis_known: bool = True


class GainsTotals(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    proceeds: Cash
    cost: Cash
    gain: Cash
    wash_sales: int


class GainsReport(Message):
    TYPE: ClassVar[str] = "ledger.gains.view"
    account_id: AccountId
    year: int
    sales: list[RealisedGain]
    short_term: GainsTotals
    long_term: GainsTotals
    total: GainsTotals


# ---------------------------------------------------------------- margin and loans

# A rate as a decimal fraction (0.30 = 30%), at most 4 decimals, from 0 to 1.
Rate = Annotated[Decimal, *_decimal(4, non_negative=True, maximum=Decimal("1"))]


class DrawLoan(Message):
    """Command to the ledger (sent by the margin service once it approved a borrow): book a
    margin loan of ``amount`` into the account's cash, once per ``loan_id``."""

    TYPE: ClassVar[str] = "ledger.loan.draw"
    account_id: AccountId
    loan_id: UUID
    amount: PositiveCash


class RepayLoan(Message):
    """Command to the ledger: repay ``amount`` of the account's margin loan from its cash,
    once per ``repayment_id``. Refused when the cash or the loan is smaller, unless
    ``up_to`` (liquidation proceeds): then it repays what the cash and the loan allow, up to
    ``amount``. Replies ``ledger.loan.changed``."""

    TYPE: ClassVar[str] = "ledger.loan.repay"
    account_id: AccountId
    repayment_id: UUID
    amount: PositiveCash
    up_to: bool = False


class ChargeLoanInterest(Message):
    """Command to the ledger (the margin service's monthly charge): take the interest accrued
    on the loan over ``period`` (``YYYY-MM``) from the account's cash, once per ``charge_id``.
    The cash may go negative (the pie sells to cover it)."""

    TYPE: ClassVar[str] = "ledger.loan.interest"
    account_id: AccountId
    charge_id: UUID
    amount: PositiveCash
    period: Annotated[str, StringConstraints(pattern=r"^\d{4}-(0[1-9]|1[0-2])$")]


class LoanChanged(Message):
    """The ledger booked a loan draw (``cause`` loan) or a repayment: the account's loan and
    cash after it, at the account's ledger ``version`` (the same change is also published as
    ``ledger.cash.changed``)."""

    TYPE: ClassVar[str] = "ledger.loan.changed"
    account_id: AccountId
    loan: Cash
    delta: Cash
    cash: Cash
    cause: Literal["loan", "repayment"]
    cause_id: str
    version: int
    booked_at: datetime


class BorrowMargin(Message):
    """Command: borrow ``amount`` against the portfolio into cash. The margin service checks
    eligibility, diversification and borrowing power, then has the ledger book the loan.
    Replies ``margin.loan.requested``."""

    TYPE: ClassVar[str] = "margin.loan.borrow"
    account_id: AccountId
    amount: PositiveCash


class LoanRequested(Message):
    TYPE: ClassVar[str] = "margin.loan.requested"
    account_id: AccountId
    loan_id: UUID
    amount: PositiveCash
    # what is left to borrow once this loan is booked
    borrowing_power: Cash


class SetSecurityRequirement(Message):
    """Operator command: a security's own margin requirements (null: the house default).
    ``initial``: the share of its value that cannot be borrowed (1 = adds no borrowing
    power); ``maintenance``: its maintenance rate (never applied below the regulatory floor)."""

    TYPE: ClassVar[str] = "margin.requirement.set"
    symbol: Symbol
    initial: Rate | None = None
    maintenance: Rate | None = None


class SecurityRequirement(Message):
    TYPE: ClassVar[str] = "margin.requirement.view"
    symbol: Symbol
    initial: Rate | None
    maintenance: Rate | None


class GetMarginStatus(Message):
    TYPE: ClassVar[str] = "margin.status.get"
    account_id: AccountId


class MarginCallState(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    call_id: UUID
    status: Literal["open", "met", "liquidating", "liquidated"]
    amount_due: Cash
    deadline: datetime
    issued_at: datetime
    liquidation_amount: Cash | None = None
    closed_at: datetime | None = None


class MarginStatus(Message):
    """An account's margin figures: market value, cash, loan, equity (market value + cash -
    loan), maintenance requirement, borrowing power, interest accrued and any open call."""

    TYPE: ClassVar[str] = "margin.status.view"
    account_id: AccountId
    eligible: bool
    reason: str | None
    market_value: Cash
    cash: Cash
    loan: Cash
    equity: Cash
    requirement: Cash
    borrowing_power: Cash
    interest_rate: Rate
    interest_accrued: Cash
    call: MarginCallState | None


class MarginCallIssued(Message):
    """Equity fell below the maintenance requirement: ``amount_due`` (requirement - equity)
    by ``deadline``, or the account is liquidated."""

    TYPE: ClassVar[str] = "margin.call.issued"
    account_id: AccountId
    call_id: UUID
    amount_due: PositiveCash
    market_value: Cash
    equity: Cash
    requirement: Cash
    loan: Cash
    deadline: datetime
    issued_at: datetime


class MarginCallMet(Message):
    """A call closed as met: equity is back at or above the requirement (a deposit, a
    repayment or a market recovery)."""

    TYPE: ClassVar[str] = "margin.call.met"
    account_id: AccountId
    call_id: UUID
    equity: Cash
    requirement: Cash
    met_at: datetime


class MarginCallLiquidated(Message):
    """A call unmet at its deadline (``reason`` deadline) or equity under the hard floor
    (``reason`` floor): ``amount`` of holdings are sold in the next window at the highest
    priority and the proceeds repay the loan."""

    TYPE: ClassVar[str] = "margin.call.liquidated"
    account_id: AccountId
    call_id: UUID
    amount: PositiveCash
    shortfall: Cash
    reason: Literal["deadline", "floor"]
    liquidated_at: datetime


class AccrueInterest(Message):
    """Command: run the margin interest job for ``day`` (America/New_York): accrue a day's
    interest on every loan, and on the month's last day charge the month's interest to cash.
    Done once per day however often it runs. Replies ``margin.interest.accrued``."""

    TYPE: ClassVar[str] = "margin.interest.accrue"
    day: date


class InterestAccrued(Message):
    TYPE: ClassVar[str] = "margin.interest.accrued"
    day: date
    accrued_accounts: int
    charged_accounts: int
    charged: Cash


class CheckCalls(Message):
    """Command: liquidate the calls whose deadline has passed at ``at`` (default now). The
    service also runs it by itself. Replies ``margin.calls.checked``."""

    TYPE: ClassVar[str] = "margin.calls.check"
    at: AwareDatetime | None = None


class CallsChecked(Message):
    TYPE: ClassVar[str] = "margin.calls.checked"
    liquidated: list[AccountId]


# ---------------------------------------------------------------- dead letters (every service)


class ListDeadLetters(Message):
    """Query to one service: the messages it refused (its ``dead_letters``), newest first;
    with ``replayed``, also those already replayed. Every service answers it on its commands
    queue; the routing key names the service in place of ``*`` (``dead_letter_key``)."""

    TYPE: ClassVar[str] = "*.dead_letters.list"
    replayed: bool = False
    limit: int = Field(default=20, ge=1, le=500)


class GetDeadLetter(Message):
    """Query to one service: one dead letter, with its body."""

    TYPE: ClassVar[str] = "*.dead_letters.get"
    id: int = Field(ge=1)


class ReplayDeadLetter(Message):
    """Command to one service: deliver a dead letter again, under its own message id, to the
    queue that refused it and to no other (an event other services took stays taken). Once
    per dead letter: a replay refused again is a new dead letter, replayed in turn."""

    TYPE: ClassVar[str] = "*.dead_letters.replay"
    id: int = Field(ge=1)


class DeadLetter(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    id: int
    message_id: str
    routing_key: str
    # the queue that refused it (None: refused before the service recorded queues)
    queue: str | None
    correlation_id: str | None
    account_id: str | None
    reason: str
    received_at: datetime
    replayed_at: datetime | None
    answered: bool  # a request whose sender got the refusal as its reply
    size: int  # bytes of the body
    body: str | None = None  # the body as text (``GetDeadLetter`` only)


class DeadLetterList(Message):
    TYPE: ClassVar[str] = "*.dead_letters.listed"
    service: str
    dead_letters: list[DeadLetter]


class DeadLetterView(Message):
    """The answer to ``GetDeadLetter`` and ``ReplayDeadLetter``."""

    TYPE: ClassVar[str] = "*.dead_letters.view"
    service: str
    dead_letter: DeadLetter


def dead_letter_key(model: type[Message], service: str) -> str:
    """The routing key of a dead-letter message to ``service``: its ``TYPE`` with the
    service in place of ``*`` (the key the service's commands queue is bound to)."""
    return model.TYPE.replace("*", service, 1)


# ---------------------------------------------------------------- replies


class Reply(BaseModel):
    """What every request/reply command answers: ``ok`` with a result, or the reasons."""

    ok: bool
    result: dict[str, Any] | None = None
    reason: str | None = None
    errors: list[str] = []


ALL_MESSAGES: tuple[type[Message], ...] = tuple(
    cls for cls in list(globals().values()) if isinstance(cls, type) and issubclass(cls, Message) and cls is not Message
)
BY_TYPE: dict[str, type[Message]] = {cls.TYPE: cls for cls in ALL_MESSAGES}
SliceSpec.model_rebuild()
WindowClosing.model_rebuild()
