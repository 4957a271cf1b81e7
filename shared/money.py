"""Money and quantity helpers. Money is ``Decimal``: cash to the cent, shares to 1/100,000.

Every rounding in the project goes through one of these functions so the rule is explicit.
"""

from __future__ import annotations

from decimal import ROUND_DOWN, ROUND_HALF_EVEN, ROUND_UP, Decimal

CENT = Decimal("0.01")
SHARE_STEP = Decimal("0.00001")
PRICE_STEP = Decimal("0.000001")  # prices carry 6 decimals
ZERO = Decimal("0")


def cents(value: Decimal) -> Decimal:
    """Round to the cent, half to even (banker's rounding), for computed cash amounts."""
    return value.quantize(CENT, rounding=ROUND_HALF_EVEN)


def cents_down(value: Decimal) -> Decimal:
    """Round toward zero to the cent: never hand out a cent that is not there."""
    return value.quantize(CENT, rounding=ROUND_DOWN)


def cents_up(value: Decimal) -> Decimal:
    """Round away from zero to the cent (fees are rounded up)."""
    return value.quantize(CENT, rounding=ROUND_UP)


def shares_down(value: Decimal) -> Decimal:
    """Round toward zero to 1/100,000 of a share."""
    return value.quantize(SHARE_STEP, rounding=ROUND_DOWN)


def shares_up(value: Decimal) -> Decimal:
    """Round away from zero to 1/100,000 of a share: a sell of a dollar amount delivers at
    least the shares that amount is worth, so its proceeds are always covered."""
    return value.quantize(SHARE_STEP, rounding=ROUND_UP)


def shares(value: Decimal) -> Decimal:
    """Round half to even to 1/100,000 of a share."""
    return value.quantize(SHARE_STEP, rounding=ROUND_HALF_EVEN)
