"""Pie rules: validating a pie tree, when auto-invest fires, valuing the tree. Pure; no I/O.

What to buy and sell is decided in services/pie/rebalance.py.

Vocabulary:
- a *slice* is a security (``symbol``) or a nested pie, with a whole-percent ``target``
  within its parent pie;
- a slice's *path* names it from the root down, without the root's own name:
  ``"VTI"`` for a top-level security, ``"Core/Bonds/BND"`` for one two pies deep. Every
  name in a pie is unique, so a path names one slice even when the same symbol sits in two
  sub-pies;
- a slice's *depth* is 0 for a slice of the root pie, 1 for a slice of a sub-pie, and so on.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from decimal import Decimal, localcontext

from shared.contracts import PieSpec, SliceSpec, SliceView
from shared.money import SHARE_STEP, ZERO, cents, cents_down

MAX_SLICES = 100
MIN_TARGET = 1
# Sub-pies may nest at most this many levels below the root (our limit; M1 documents none).
MAX_NESTING = 5
# Auto-invest starts once this much (above minimum cash and pending buys) is investable.
AUTO_INVEST_THRESHOLD = Decimal("25.00")
# Minimum order: a buy under this is left out and its cash stays uninvested.
MIN_BUY = Decimal("1.00")
HUNDRED = Decimal(100)
NO_SHARES = ZERO.quantize(SHARE_STEP)
# Exact arithmetic for effective weights (a product of up to six whole percents) times cash.
_EXACT = 60


def slice_name(s: SliceSpec) -> str:
    return s.symbol if s.symbol is not None else s.pie.name


def join(parent: str, name: str) -> str:
    return f"{parent}/{name}" if parent else name


# ---------------------------------------------------------------- validation


def validate(pie: PieSpec, known_symbols: Collection[str]) -> list[str]:
    """Every reason the tree cannot be an account's pie, in tree order (empty when valid)."""
    errors: list[str] = []
    _check(pie, "", 0, set(known_symbols), errors)
    return errors


def _check(pie: PieSpec, path: str, level: int, known: set[str], errors: list[str]) -> None:
    where = f"pie {path}" if path else f"root pie {pie.name!r}"
    if level > MAX_NESTING:
        errors.append(f"{where}: nested {level} levels below the root, at most {MAX_NESTING} allowed")
    if path and "/" in pie.name:
        errors.append(f"{where}: a pie name may not contain '/'")
    if not pie.slices:
        errors.append(f"{where}: has no slices, at least 1 needed")
    if len(pie.slices) > MAX_SLICES:
        errors.append(f"{where}: has {len(pie.slices)} slices, at most {MAX_SLICES} allowed")
    total = sum(s.target for s in pie.slices)
    if pie.slices and total != 100:
        errors.append(f"{where}: targets sum to {total}, not 100")
    seen: set[str] = set()
    for s in pie.slices:
        name = slice_name(s)
        at = join(path, name)
        if s.target < MIN_TARGET:
            errors.append(f"slice {at}: target {s.target}% is below the minimum of {MIN_TARGET}%")
        if name in seen:
            kind = "symbol" if s.symbol is not None else "slice name"
            errors.append(f"{where}: duplicate {kind} {name}")
        seen.add(name)
        if s.symbol is not None and s.symbol not in known:
            errors.append(f"slice {at}: unknown symbol {s.symbol} (the market has no price for it)")
        if s.pie is not None:
            _check(s.pie, at, level + 1, known, errors)


# ---------------------------------------------------------------- the tree's securities


@dataclass(frozen=True)
class Leaf:
    """A security slice with its effective weight: the product of the targets on its path."""

    path: str
    symbol: str
    weight: Decimal  # fraction of the root, exact (e.g. 0.6 x 0.5 = 0.30)


def leaves(pie: PieSpec) -> list[Leaf]:
    """The tree's securities in tree order (depth first, slices in the order given)."""
    out: list[Leaf] = []

    def walk(p: PieSpec, path: str, weight: Decimal) -> None:
        for s in p.slices:
            w = weight * s.target / HUNDRED
            at = join(path, slice_name(s))
            if s.symbol is not None:
                out.append(Leaf(at, s.symbol, w))
            else:
                walk(s.pie, at, w)

    with localcontext() as ctx:
        ctx.prec = _EXACT
        walk(pie, "", Decimal(1))
    return out


def slice_for(pie: PieSpec | None, symbol: str, side: str, held: Mapping[str, Decimal]) -> str:
    """The slice a trade made outside this service (a customer's order) belongs to: the
    security's slice in the tree, and of several (the same security in two sub-pies) the
    first for a buy, the one holding most for a sell. A security not in the tree gets a
    top-level path of its own (so a later pie change treats it as a removed slice)."""
    paths = [leaf.path for leaf in leaves(pie)] if pie is not None else []
    candidates = [p for p in paths if p.rsplit("/", 1)[-1] == symbol]
    if not candidates:
        return symbol
    if side == "sell":
        return max(candidates, key=lambda p: (held.get(p, ZERO), -candidates.index(p)))
    return candidates[0]


def dividend_symbol(cause_id: str) -> str | None:
    """The paying security of a dividend's cash change (cause id ``dividend:<SYMBOL>:<ex-date>``)."""
    parts = cause_id.split(":")
    return parts[1] if len(parts) == 3 and parts[0] == "dividend" and parts[1] else None


def pie_paths(pie: PieSpec, path: str = "") -> set[str]:
    """The path of every pie in the tree, the root's being ""."""
    out = {path}
    for s in pie.slices:
        if s.pie is not None:
            out |= pie_paths(s.pie, join(path, s.pie.name))
    return out


def removed_slices(pie: PieSpec, held: Collection[str]) -> dict[str, str]:
    """Held security paths that are no longer slices of ``pie``, each with the pie that
    receives its proceeds: its nearest ancestor still in the tree (the root at worst)."""
    kept = {leaf.path for leaf in leaves(pie)}
    pies = pie_paths(pie)
    out = {}
    for path in sorted(held):
        if path in kept:
            continue
        parts = path.split("/")[:-1]
        while parts and "/".join(parts) not in pies:
            parts.pop()
        out[path] = "/".join(parts)
    return out


# ---------------------------------------------------------------- auto-invest


def investable(cash: Decimal, minimum_cash: Decimal, pending_buys: Decimal) -> Decimal:
    """Cash that no buy has been submitted for, above the holder's minimum."""
    return cash - minimum_cash - pending_buys


def should_auto_invest(pie: PieSpec | None, *, enabled: bool, available: Decimal) -> bool:
    """Auto-invest fires with a pie set, the setting on, and at least $25 investable."""
    return enabled and pie is not None and available >= AUTO_INVEST_THRESHOLD


@dataclass(frozen=True)
class WithdrawalNeed:
    """What a held withdrawal needs from sells (``sell``), or why it cannot be paid."""

    sell: Decimal
    refusal: str | None = None


def withdrawal_need(amount: Decimal, *, cash: Decimal, pending_buys: Decimal, held: Decimal,
                    holdings: Decimal) -> WithdrawalNeed:
    """Cash first: what the cash not promised to pending buys or earlier held withdrawals
    covers; the rest must come from sells of the holdings (worth ``holdings``). A
    withdrawal above cash plus holdings is refused with both figures."""
    free = max(cash - pending_buys - held, ZERO)
    sell = max(amount - free, ZERO)
    if sell > holdings:
        withdrawable = free + holdings
        return WithdrawalNeed(sell, f"withdrawal of ${amount} exceeds the withdrawable value ${withdrawable} "
                                    f"(cash ${free} + investments ${holdings})")
    return WithdrawalNeed(sell)


def slice_values(holdings: Mapping[str, Decimal], prices: Mapping[str, Decimal],
                 pending: Mapping[str, Decimal]) -> dict[str, Decimal]:
    """What each security slice is worth to the rebalancer, by path: its quantity times its
    symbol's last price, rounded down to the cent (so a dollar sell of a slice's whole value
    never needs more shares than it holds), plus the slice's pending buys minus its pending
    sells (money already on its way), never below zero."""
    symbols = {path: path.rsplit("/", 1)[-1] for path in (*holdings, *pending)}
    out = {}
    for path, symbol in symbols.items():
        value = cents_down(holdings.get(path, ZERO) * prices.get(symbol, ZERO)) + pending.get(path, ZERO)
        out[path] = max(value, cents(ZERO))
    return out


# ---------------------------------------------------------------- the portfolio view


def _pct(part: Decimal, whole: Decimal) -> Decimal:
    """``part`` as a percent of ``whole`` to 2 decimals (half to even); 0 when ``whole`` is 0."""
    return cents(part * HUNDRED / whole) if whole else cents(ZERO)


def view_slices(pie: PieSpec, holdings: Mapping[str, Decimal], prices: Mapping[str, Decimal]) -> list[SliceView]:
    """Every slice of the tree in tree order (a sub-pie before its slices).

    A security's value is its slice's quantity times the symbol's price, rounded to the cent
    (half to even, as market values are shown); a sub-pie's value is the sum of its slices. ``actual_pct`` is the slice's value as
    a percent of its parent pie's value.
    """

    def walk(p: PieSpec, path: str, depth: int) -> tuple[Decimal, list[tuple[SliceSpec, str, Decimal, list]]]:
        rows = []
        for s in p.slices:
            at = join(path, slice_name(s))
            if s.symbol is not None:
                value = cents(holdings.get(at, ZERO) * prices.get(s.symbol, ZERO))
                rows.append((s, at, value, []))
            else:
                value, children = walk(s.pie, at, depth + 1)
                rows.append((s, at, value, children))
        return sum((r[2] for r in rows), cents(ZERO)), rows

    out: list[SliceView] = []

    def emit(rows, parent_value: Decimal, depth: int) -> None:
        for s, at, value, children in rows:
            out.append(SliceView(
                path=at, symbol=s.symbol, depth=depth, target_pct=Decimal(s.target),
                actual_pct=_pct(value, parent_value), value=value,
                quantity=holdings.get(at, NO_SHARES) if s.symbol is not None else None,
            ))
            emit(children, value, depth + 1)

    total, rows = walk(pie, "", 0)
    emit(rows, total, 0)
    return out


@dataclass(frozen=True)
class Totals:
    invested: Decimal
    total: Decimal


def totals(slices: list[SliceView], cash: Decimal) -> Totals:
    """Invested = the sum of the top-level slices' values; total = cash + invested."""
    invested = sum((s.value for s in slices if s.depth == 0), cents(ZERO))
    return Totals(invested, cash + invested)
