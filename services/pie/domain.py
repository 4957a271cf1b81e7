"""Pie rules: validating a pie tree, what a pie change does to held slices, which slices
trades made outside this service's plans belong to, when auto-invest fires, valuing the
tree. Pure; no I/O.

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

import uuid
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, localcontext

from shared.contracts import Fill, HeldOutside, PieSpec, Side, SliceSpec, SliceView
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


def slice_for(pie: PieSpec | None, symbol: str) -> str:
    """The slice a buy made outside this service's plans (a customer's order, a reinvested
    dividend) belongs to: the security's slice in the tree, the first in tree order when it
    sits in several sub-pies. A security not in the tree gets a top-level path of its own (so a
    later pie change treats it as a removed slice)."""
    paths = symbol_paths(pie, symbol) if pie is not None else []
    return paths[0] if paths else symbol


def symbol_paths(pie: PieSpec, symbol: str) -> list[str]:
    """The paths of ``symbol``'s slices in the tree, in tree order."""
    return [leaf.path for leaf in leaves(pie) if leaf.symbol == symbol]


def symbol_of(path: str) -> str:
    """The security of a security slice's path (its last name)."""
    return path.rsplit("/", 1)[-1]


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


# ---------------------------------------------------------------- pie changes


@dataclass(frozen=True)
class Removed:
    """What a pie change does to the held slices it no longer has."""

    moved: dict[str, str]  # old path -> the new tree's slice of the same security: nothing trades
    sold: dict[str, str]  # old path -> the pie that receives its proceeds: the security left the tree


def removed_slices(pie: PieSpec, held: Collection[str], *, pending: Collection[str] = (),
                   selling: Collection[str] = ()) -> Removed:
    """Security paths in this service's books (``held``: holding shares; ``pending``: with
    pending intents only) that are no longer slices of ``pie``, in path order:

    - a security still in the tree moves (shares, cost and pending intents) to its slice: the
      first of its slices in tree order that holds nothing yet (no shares, no pending intent,
      no earlier move), else the first of its slices in tree order. So a moved slice or a
      renamed sub-pie keeps its holdings, and two slices merged into one add up;
    - a security gone from the tree is sold, its proceeds for its nearest ancestor pie still in
      the tree (the root at worst); not a path with nothing held, nor one already being sold
      (``selling``: its pending sell ends it, and it is looked at again once that fills)."""
    kept = {leaf.path: leaf.symbol for leaf in leaves(pie)}
    by_symbol: dict[str, list[str]] = {}
    for path, symbol in kept.items():
        by_symbol.setdefault(symbol, []).append(path)
    used = {*held, *pending}
    pies = pie_paths(pie)
    out = Removed({}, {})
    for path in sorted(used):
        if path in kept:
            continue
        if slices := by_symbol.get(symbol_of(path)):
            into = next((p for p in slices if p not in used), slices[0])
            out.moved[path] = into
            used.add(into)
            continue
        if path not in held or path in selling:
            continue
        parts = path.split("/")[:-1]
        while parts and "/".join(parts) not in pies:
            parts.pop()
        out.sold[path] = "/".join(parts)
    return out


# ---------------------------------------------------------------- shares sold outside a plan


def largest_remainder(amount: int, n: int, numerators: Mapping[int, int], denominator: int) -> list[int]:
    """Exact amounts ``numerators[j] / denominator`` units (cents, or 1/100,000 shares),
    floored, then the missing units one by one to the largest remainders (ties to the lower
    index). The result sums to ``amount`` when the exact amounts do."""
    out = [0] * n
    remainders = []
    for j, num in numerators.items():
        q, r = divmod(num, denominator)
        out[j] = q
        remainders.append((-r, j))
    missing = amount - sum(out)
    remainders.sort()
    for _, j in remainders[:missing]:
        out[j] += 1
    return out


def _units(shares: Decimal) -> int:
    return int(shares.scaleb(5))  # 1/100,000 of a share


def _shares(units: int) -> Decimal:
    return Decimal(units).scaleb(-5)


def _take(quantity: Decimal, holdings: Sequence[tuple[str, Decimal]]) -> tuple[dict[str, Decimal], Decimal]:
    """Take ``quantity`` shares from ``holdings`` (path, shares) in proportion to their shares
    (largest remainder to 1/100,000 of a share, ties to the earlier), never more than one
    holds; all of them when they hold less. What each gives, and what they could not cover."""
    holdings = [(p, q) for p, q in holdings if q > 0]
    total = sum((q for _, q in holdings), ZERO)
    if quantity >= total:
        return dict(holdings), quantity - total
    units = [_units(q) for _, q in holdings]
    want = _units(quantity)
    given = largest_remainder(want, len(units), {j: want * u for j, u in enumerate(units)}, sum(units))
    return {p: _shares(g) for (p, _), g in zip(holdings, given) if g > 0}, ZERO


def sell_slices(pie: PieSpec | None, symbol: str, quantity: Decimal,
                held: Mapping[str, Decimal]) -> tuple[dict[str, Decimal], Decimal]:
    """The slices ``quantity`` shares of ``symbol`` sold outside this service's plans come
    from (a customer's order names only the security): the tree's slices of the security, in
    proportion to the shares each holds (``held``, by path); beyond what they hold, the
    account's other holdings of it (a removed slice not sold yet), the same way. No slice gives
    more than it holds. Returns the shares per path and what none of them holds."""
    in_tree = symbol_paths(pie, symbol) if pie is not None else []
    others = sorted(p for p in held if symbol_of(p) == symbol and p not in in_tree)
    taken, rest = _take(quantity, [(p, held.get(p, ZERO)) for p in in_tree])
    more, rest = _take(rest, [(p, held[p]) for p in others])
    return {**taken, **more}, rest


_PART_NAMESPACE = uuid.UUID("6b1f0e3a-2c4d-4e8f-9a7b-1d3c5e7f9a20")


@dataclass(frozen=True)
class FillPart:
    """A fill made outside this service (a customer's order), or one slice's part of it."""

    intent_id: uuid.UUID  # the fill's for its first part, then derived from it and the path
    path: str
    symbol: str
    side: Side
    quantity: Decimal
    amount: Decimal


def order_fill_parts(pie: PieSpec | None, fills: Sequence[Fill], held: Mapping[str, Decimal]) -> list[FillPart]:
    """Where fills of intents this service did not submit go in its books, in order: a buy
    into the security's slice (``slice_for``); a sell split over the slices holding the
    security (``sell_slices``, with ``held`` less what earlier fills took). A sell larger than
    they hold puts the rest on the security's first slice, where booking stops at zero and
    reports it. The parts of a fill sum to its quantity and (to the cent, the rest on the
    first part) its amount."""
    held = dict(held)
    out = []
    for f in fills:
        if f.quantity <= 0:
            continue
        if f.side is Side.BUY:
            out.append(FillPart(f.intent_id, slice_for(pie, f.symbol), f.symbol, f.side, f.quantity, f.amount))
            continue
        taken, rest = sell_slices(pie, f.symbol, f.quantity, held)
        if rest > 0:
            first = next(iter(taken), slice_for(pie, f.symbol))
            taken[first] = taken.get(first, ZERO) + rest
        amounts = {p: cents_down(f.amount * q / f.quantity) for p, q in taken.items()}
        first = next(iter(taken))
        amounts[first] += f.amount - sum(amounts.values())
        for n, (path, q) in enumerate(taken.items()):
            held[path] = held.get(path, ZERO) - q
            part_id = f.intent_id if n == 0 else uuid.uuid5(_PART_NAMESPACE, f"{f.intent_id}:{path}")
            out.append(FillPart(part_id, path, f.symbol, f.side, q, amounts[path]))
    return out


def take_oversold(pie: PieSpec | None, oversold: Mapping[str, Decimal],
                  held: Mapping[str, Decimal]) -> tuple[dict[str, Decimal], dict[str, Decimal]]:
    """Sells that delivered more shares than their slice held (``oversold``: the shares
    beyond, by path; booking stopped the slice at zero): the window sold the rest from the
    account's other holdings of the security, so they give it by ``sell_slices``. Returns the
    shares each path gives, and per security what no slice holds (the pie's books short of the
    ledger's)."""
    held = dict(held)
    taken: dict[str, Decimal] = {}
    missing: dict[str, Decimal] = {}
    for path, shares in sorted(oversold.items()):
        symbol = symbol_of(path)
        parts, rest = sell_slices(pie, symbol, shares, {p: q for p, q in held.items() if p != path})
        for p, q in parts.items():
            taken[p] = taken.get(p, ZERO) + q
            held[p] -= q
        if rest > 0:
            missing[symbol] = missing.get(symbol, ZERO) + rest
    return taken, missing


# ---------------------------------------------------------------- auto-invest


def investable(cash: Decimal, minimum_cash: Decimal, pending_buys: Decimal) -> Decimal:
    """Cash that no buy has been submitted for, above the holder's minimum."""
    return cash - minimum_cash - pending_buys


def should_auto_invest(pie: object | None, *, enabled: bool, available: Decimal) -> bool:
    """Auto-invest fires with a pie set (its spec or its compiled tree), the setting on, and
    at least $25 investable."""
    return enabled and pie is not None and available >= AUTO_INVEST_THRESHOLD


@dataclass(frozen=True)
class WithdrawalNeed:
    """What a held withdrawal needs from sells (``sell``), or why it cannot be paid."""

    sell: Decimal
    refusal: str | None = None


def withdrawal_need(amount: Decimal, *, cash: Decimal, shortfall: Decimal, holdings: Decimal) -> WithdrawalNeed:
    """Cash first, then sells of the holdings (worth ``holdings``) for the rest: the ledger's
    ``shortfall`` over the ``cash`` free for the withdrawal (``ledger.withdrawal.pending``).
    Pending buys take nothing from it: a held withdrawal comes before the buys of any window
    frozen after it (the ledger holds a window's cash net of held withdrawals), and the
    buys frozen before it are already out of its cash. A withdrawal above cash plus holdings
    is refused with both figures."""
    if shortfall > holdings:
        return WithdrawalNeed(shortfall, f"withdrawal of ${amount} exceeds the withdrawable value "
                                         f"${cash + holdings} (cash ${cash} + investments ${holdings})")
    return WithdrawalNeed(shortfall)


def slice_values(holdings: Mapping[str, Decimal], prices: Mapping[str, Decimal],
                 pending: Mapping[str, Decimal]) -> dict[str, Decimal]:
    """What each security slice is worth to the rebalancer, by path: its quantity times its
    symbol's last price, rounded down to the cent (so a dollar sell of a slice's whole value
    never needs more shares than it holds), plus the slice's pending buys minus its pending
    sells (money already on its way), never below zero."""
    symbols = {path: symbol_of(path) for path in (*holdings, *pending)}
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
    (half to even, as market values are shown); a sub-pie's value is the sum of its slices.
    ``actual_pct`` is the slice's value as a percent of its parent pie's value.
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


def held_outside(pie: PieSpec | None, holdings: Mapping[str, Decimal], prices: Mapping[str, Decimal],
                 delisted: Mapping[str, str]) -> list[HeldOutside]:
    """The shares held at paths that are not slices of ``pie`` (every path, without a pie),
    in path order, valued like slices; ``delisted`` gives the reason of those that wait
    for their security to trade again."""
    kept = {leaf.path for leaf in leaves(pie)} if pie is not None else set()
    out = []
    for path in sorted(holdings):
        if path in kept or holdings[path] <= 0:
            continue
        symbol = symbol_of(path)
        out.append(HeldOutside(path=path, symbol=symbol, quantity=holdings[path],
                               value=cents(holdings[path] * prices.get(symbol, ZERO)), delisted=delisted.get(symbol)))
    return out


def totals(slices: list[SliceView], cash: Decimal, outside: Sequence[HeldOutside] = ()) -> Totals:
    """Invested = the sum of the top-level slices' values and of the shares held outside the
    pie; total = cash + invested."""
    invested = sum((s.value for s in slices if s.depth == 0), cents(ZERO)) + sum((h.value for h in outside), ZERO)
    return Totals(invested, cash + invested)
