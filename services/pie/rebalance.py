"""Dynamic rebalancing: which slices to buy or sell, exact to the cent. Pure; no I/O.

Everything works pie by pie, from the root down (docs/services/pie.md, "Rebalancing"):

- inside one pie with slice values ``v_j`` (a sub-pie is worth the sum of its slices) and
  whole-percent targets ``t_j``, a slice's *fill ratio* is ``v_j / t_j`` (dollars held per
  target percent). The *most underweight* slice is the one with the lowest fill ratio, the
  most overweight the one with the highest;
- money coming into a pie (a deposit) raises the lowest fill ratios to a common level
  ``L``: slice ``j`` receives ``max(0, t_j * L - v_j)``, with ``L`` such that the amounts sum
  to the money. This is the unique minimiser, over buy-only allocations, of the pie's
  weighted squared drift ``sum_j (x_j - t_j X / 100)^2 / t_j`` (``x_j`` the new values, ``X``
  the pie's new total), and it minimises the largest relative shortfall
  ``1 - x_j / (t_j X / 100)`` too;
- money leaving a pie (a withdrawal) lowers the highest fill ratios to a common level:
  slice ``j`` gives ``max(0, v_j - t_j * L)``, the same objective over sell-only plans;
- what a sub-pie receives (or gives) is then spread over its own slices the same way.

Amounts are computed in integer cents with exact rational arithmetic, then rounded per pie
by largest remainder: each slice's exact amount is floored to the cent and the cents still
missing go one by one to the largest remainders (ties to the earlier slice). So a pie's
amounts sum exactly to what the pie receives, none is negative, none exceeds a slice's value
on a sell, and each is within a cent of the pie's exact optimum.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from math import lcm

from services.pie.domain import MIN_BUY, investable, join, largest_remainder, slice_name, should_auto_invest
from shared.contracts import PieSpec, Side
from shared.money import CENT, cents

# Every whole-percent target divides this, so ``v * _LCM // t`` orders fill ratios exactly.
_LCM = lcm(*range(1, 101))
ZERO_CENTS = Decimal("0.00")


class RebalanceError(ValueError):
    """A request the tree cannot satisfy (e.g. a sell larger than the pie's value)."""


# ---------------------------------------------------------------- one pie, integer cents


def fill(amount: int, values: list[int], targets: list[int]) -> list[int]:
    """Buy-only: split ``amount`` cents over slices worth ``values`` cents, lowest fill ratio
    first (see the module docstring). Ties go to the earlier slice."""
    n = len(values)
    if amount == 0 or n == 0:
        return [0] * n
    order = sorted(range(n), key=lambda j: values[j] * _LCM // targets[j])
    cum_v = cum_t = 0
    k = 0
    for k, j in enumerate(order):
        cum_v += values[j]
        cum_t += targets[j]
        if k + 1 < n:
            nxt = order[k + 1]
            if (amount + cum_v) * targets[nxt] > values[nxt] * cum_t:
                continue  # the common level would pass the next slice's ratio: it joins
        break
    level = amount + cum_v  # L = level / cum_t cents per percent
    chosen = sorted(order[: k + 1])
    numerators = {j: targets[j] * level - values[j] * cum_t for j in chosen}
    return largest_remainder(amount, n, numerators, cum_t)


def drain(amount: int, values: list[int], targets: list[int]) -> list[int]:
    """Sell-only: take ``amount`` cents from slices worth ``values`` cents, highest fill ratio
    first. Raises RebalanceError when ``amount`` exceeds their total."""
    n = len(values)
    total = sum(values)
    if amount > total:
        raise RebalanceError(f"cannot sell {_dollars(amount)} from slices worth {_dollars(total)}")
    if amount == 0:
        return [0] * n
    order = sorted(range(n), key=lambda j: -(values[j] * _LCM // targets[j]))
    cum_v = cum_t = 0
    k = 0
    for k, j in enumerate(order):
        cum_v += values[j]
        cum_t += targets[j]
        if k + 1 < n:
            nxt = order[k + 1]
            if (cum_v - amount) * targets[nxt] < values[nxt] * cum_t:
                continue  # the common level would drop below the next slice's ratio: it joins
        break
    level = cum_v - amount
    chosen = sorted(order[: k + 1])
    numerators = {j: values[j] * cum_t - targets[j] * level for j in chosen}
    return largest_remainder(amount, n, numerators, cum_t)


def split(amount: int, targets: list[int]) -> list[int]:
    """``amount`` cents by target, largest remainder: what every slice holds after a full
    rebalance of a pie worth ``amount``."""
    return fill(amount, [0] * len(targets), targets)


def _dollars(c: int) -> str:
    return f"${Decimal(c) / 100:.2f}"


def to_cents(amount: Decimal) -> int:
    c = amount * 100
    whole = int(c)
    if whole != c:
        raise RebalanceError(f"amount must be whole cents, got {amount}")
    return whole


def from_cents(c: int) -> Decimal:
    return (Decimal(c) * CENT).quantize(CENT)


# ---------------------------------------------------------------- the tree


@dataclass
class Node:
    """A pie with its slices' paths, targets and values in cents (a sub-pie's value is the
    sum of its slices). ``leaves[j]`` numbers a security slice in the tree's order (None for
    a sub-pie, whose node is ``children[j]``)."""

    path: str
    paths: list[str]
    symbols: list[str | None]
    targets: list[int]
    values: list[int]
    children: list[Node | None]
    leaves: list[int | None]

    @property
    def value(self) -> int:
        return sum(self.values)


class Tree:
    """A pie tree compiled once (paths, targets, securities numbered in tree order), so
    that each allocation only adds up integers.

    ``exclude``: securities left out of every allocation (delisted: they cannot trade). Their
    slices, and sub-pies left with no slice, are not in the tree: buys and sells go to the
    other slices by the same rules, their targets as they are (a pie's fill ratios compare
    its tradable slices only), and a pie's value counts its tradable slices only."""

    def __init__(self, pie: PieSpec, exclude: frozenset[str] = frozenset()) -> None:
        self.paths: list[str] = []  # every security slice's path, in tree order
        self.symbols: list[str] = []
        self.pies: set[str] = {""}  # every pie's path in the tree, the root's being ""
        self._exclude = exclude
        self._shape = self._compile(pie, "")
        self.index = {p: k for k, p in enumerate(self.paths)}

    def _compile(self, pie: PieSpec, path: str) -> Node:
        node = Node(path, [], [], [], [], [], [])
        for s in pie.slices:
            at = join(path, slice_name(s))
            if s.symbol is not None:
                if s.symbol in self._exclude:
                    continue
                child, leaf = None, len(self.paths)
                self.paths.append(at)
                self.symbols.append(s.symbol)
            else:
                child, leaf = self._compile(s.pie, at), None
                if not child.paths:
                    continue
                self.pies.add(at)
            node.paths.append(at)
            node.symbols.append(s.symbol)
            node.targets.append(s.target)
            node.leaves.append(leaf)
            node.children.append(child)
        return node

    def cents_of(self, values: Mapping[str, Decimal]) -> list[int]:
        """Each security's value in whole cents, in tree order (a path not in ``values`` is 0)."""
        out = []
        for p in self.paths:
            v = values.get(p)
            if v is None:
                out.append(0)
                continue
            n, d = v.as_integer_ratio()
            c, r = divmod(100 * n, d)
            if r:
                raise RebalanceError(f"value of {p} must be whole cents, got {v}")
            out.append(c)
        return out

    def node(self, leaf_cents: list[int]) -> Node:
        """The tree with these security values filled in (sub-pies summed)."""
        return self._fill(self._shape, leaf_cents)

    def _fill(self, shape: Node, leaf_cents: list[int]) -> Node:
        children = [None if c is None else self._fill(c, leaf_cents) for c in shape.children]
        values = [leaf_cents[k] if k is not None else c.value
                  for k, c in zip(shape.leaves, children, strict=True)]
        return Node(shape.path, shape.paths, shape.symbols, shape.targets, values, children, shape.leaves)


def build(pie: PieSpec | Tree, values: Mapping[str, Decimal]) -> Node:
    """The tree with every security slice's value (by path, whole cents; missing = 0)."""
    tree = pie if isinstance(pie, Tree) else Tree(pie)
    return tree.node(tree.cents_of(values))


def find(node: Node, path: str) -> Node:
    """The sub-pie at ``path`` ("" is the root)."""
    if path in ("", node.path):
        return node
    for at, child in zip(node.paths, node.children, strict=True):
        if child is not None and (path == at or path.startswith(at + "/")):
            return find(child, path)
    raise RebalanceError(f"no pie at path {path!r}")


def _spread(node: Node, amount: int, how, out: dict[str, int]) -> None:
    for at, child, a in zip(node.paths, node.children, how(amount, node.values, node.targets), strict=True):
        if child is None:
            if a:
                out[at] = out.get(at, 0) + a
        else:
            _spread(child, a, how, out)


def buys_for(node: Node, amount: int) -> dict[str, int]:
    """Buy-only allocation of ``amount`` cents through the tree: cents per security path."""
    out: dict[str, int] = {}
    _spread(node, amount, fill, out)
    return out


def sells_for(node: Node, amount: int) -> dict[str, int]:
    """Sell-only allocation of ``amount`` cents through the tree: cents per security path."""
    out: dict[str, int] = {}
    _spread(node, amount, drain, out)
    return out


def targets_for(node: Node, total: int, *, top_level_only: bool = False) -> dict[str, int]:
    """Security values (cents per path) after a full rebalance of a pie worth ``total``.

    Every slice at every level gets its target share of its parent's new value (largest
    remainder per pie). With ``top_level_only`` only the pie's own slices are set to target;
    a sub-pie's change is bought or sold inside it by the deposit or withdrawal rule."""
    out: dict[str, int] = {}
    for at, child, v, t in zip(node.paths, node.children, node.values, split(total, node.targets), strict=True):
        if child is None:
            out[at] = t
        elif not top_level_only:
            out.update(targets_for(child, t))
        else:
            current = leaf_values(child)
            moves = buys_for(child, t - v) if t >= v else {p: -c for p, c in sells_for(child, v - t).items()}
            out.update({p: c + moves.get(p, 0) for p, c in current.items()})
    return out


def leaf_values(node: Node) -> dict[str, int]:
    """Cents per security path under ``node``."""
    out: dict[str, int] = {}
    for at, child, v in zip(node.paths, node.children, node.values, strict=True):
        if child is None:
            out[at] = v
        else:
            out.update(leaf_values(child))
    return out


# ---------------------------------------------------------------- plans


@dataclass(frozen=True)
class Trade:
    path: str
    symbol: str
    side: Side
    amount: Decimal
    # A sell of the slice's whole value (the slice is emptied).
    everything: bool = False


@dataclass(frozen=True)
class Plan:
    trades: list[Trade]
    # Buys under $1 left out: their cash stays uninvested.
    left_out: Decimal = ZERO_CENTS

    @property
    def buys(self) -> Decimal:
        return sum((t.amount for t in self.trades if t.side is Side.BUY), ZERO_CENTS)

    @property
    def sells(self) -> Decimal:
        return sum((t.amount for t in self.trades if t.side is Side.SELL), ZERO_CENTS)


def _plan(tree: Tree, leaf_cents: list[int], moves: Mapping[str, int], min_buy: Decimal) -> Plan:
    """Trades in tree order from signed cents per path; buys under ``min_buy`` left out."""
    trades: list[Trade] = []
    left_out = 0
    for k in sorted(tree.index[p] for p in moves):
        path, symbol, held, c = tree.paths[k], tree.symbols[k], leaf_cents[k], moves[tree.paths[k]]
        if c > 0 and from_cents(c) < min_buy:
            left_out += c
        elif c > 0:
            trades.append(Trade(path, symbol, Side.BUY, from_cents(c)))
        elif c < 0:
            trades.append(Trade(path, symbol, Side.SELL, from_cents(-c), everything=-c == held))
    return Plan(trades, from_cents(left_out))


def _prepare(pie: PieSpec | Tree, values: Mapping[str, Decimal]) -> tuple[Tree, list[int], Node]:
    tree = pie if isinstance(pie, Tree) else Tree(pie)
    leaf_cents = tree.cents_of(values)
    return tree, leaf_cents, tree.node(leaf_cents)


def deposit(pie: PieSpec | Tree, values: Mapping[str, Decimal], amount: Decimal, *, path: str = "",
            min_buy: Decimal = MIN_BUY) -> Plan:
    """Buy-only: invest ``amount`` into the most underweight slices first, pie by pie, into
    the whole tree or only the pie at ``path``. The buys plus ``left_out`` sum exactly to
    ``amount``. ``values``: each security slice's value by path, whole cents."""
    tree, leaf_cents, root = _prepare(pie, values)
    node = find(root, path)
    if not node.paths:  # nothing tradable (every security delisted): the cash stays
        return Plan([], amount)
    return _plan(tree, leaf_cents, buys_for(node, to_cents(amount)), min_buy)


def withdrawal(pie: PieSpec | Tree, values: Mapping[str, Decimal], amount: Decimal) -> Plan:
    """Sell-only: raise ``amount`` from the most overweight slices first, pie by pie. The
    sells sum exactly to ``amount``; RebalanceError when the holdings are worth less."""
    tree, leaf_cents, root = _prepare(pie, values)
    return _plan(tree, leaf_cents, {p: -c for p, c in sells_for(root, to_cents(amount)).items()}, Decimal(0))


def rebalance(pie: PieSpec | Tree, values: Mapping[str, Decimal], *, path: str = "", top_level_only: bool = False,
              min_buy: Decimal = MIN_BUY) -> Plan:
    """Sells and buys that bring the pie at ``path`` (the root by default) to its targets:
    afterwards every slice at every level is within a cent of its target share of its
    parent (only the pie's own slices with ``top_level_only``). The pie's value is kept:
    sells equal buys, except buys under ``min_buy``, left out (their proceeds stay cash)."""
    tree, leaf_cents, root = _prepare(pie, values)
    node = find(root, path)
    goal = targets_for(node, node.value, top_level_only=top_level_only)
    current = leaf_values(node)
    return _plan(tree, leaf_cents, {p: goal[p] - current[p] for p in current}, min_buy)


def auto_invest(pie: PieSpec | Tree | None, values: Mapping[str, Decimal], *, enabled: bool, cash: Decimal,
                minimum_cash: Decimal, pending_buys: Decimal) -> Plan | None:
    """The buys to submit now, or None when auto-invest has nothing to do: with the setting
    on, a pie set and at least $25 investable (cash above the minimum not yet promised to a
    pending buy), all of it is invested by the deposit rule; buys under $1 are left out and
    their cash stays."""
    available = investable(cash, minimum_cash, pending_buys)
    if not should_auto_invest(pie, enabled=enabled, available=available):
        return None
    return deposit(pie, values, available)


def estimated_gain(plan: Plan, values: Mapping[str, Decimal], costs: Mapping[str, Decimal]) -> Decimal:
    """Realised gain the plan's sells would book, estimated at each slice's average cost: a
    sell of ``s`` from a slice worth ``v`` that cost ``c`` gains ``s - c * s / v`` (to the cent,
    half to even). A slice with no recorded cost counts at cost zero."""
    gain = ZERO_CENTS
    for t in plan.trades:
        value = values.get(t.path, ZERO_CENTS)
        if t.side is Side.SELL and value > 0:
            gain += t.amount - cents(costs.get(t.path, ZERO_CENTS) * t.amount / value)
    return gain
