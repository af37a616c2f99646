"""Money: exact decimal amounts for people, integer nano-dollars for the ledger.

Amounts shown to callers are :class:`~decimal.Decimal` USD. Everything the ledger adds up is an
integer count of nano-dollars (10⁻⁹ USD), so totals are exact sums of the per-call bills and a
bill is rounded once, half-even, when it is made.
"""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Any

from ...context import new_id

__all__ = [
    "NANO",
    "NANO_PER_USD",
    "UTC",
    "ZERO",
    "from_nano",
    "new_id",
    "plain",
    "quantize",
    "to_decimal",
    "to_nano",
    "utcnow",
]

UTC = timezone.utc
NANO = Decimal("1e-9")
NANO_PER_USD = 10**9
ZERO = Decimal(0)


def to_decimal(value: Any) -> Decimal:
    """An exact :class:`Decimal` from a ``Decimal``, ``int``, decimal string or ``float``.

    Floats go through ``repr`` (``0.1`` → ``Decimal('0.1')``), so no binary rounding noise
    enters the ledger.
    """
    if isinstance(value, Decimal):
        return value
    if isinstance(value, bool):
        raise TypeError("a money amount cannot be a bool")
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, str):
        try:
            return Decimal(value.strip())
        except InvalidOperation:
            raise ValueError(f"not a decimal number: {value!r}") from None
    raise TypeError(f"cannot convert {type(value).__name__} to a money amount")


def plain(amount: Decimal) -> Decimal:
    """``amount`` without trailing zeros and never in exponent form (``80``, not ``8E+1``)."""
    value = amount.normalize()
    if value.as_tuple().exponent > 0:  # type: ignore[operator]
        value = value.quantize(Decimal(1))
    return value


def to_nano(amount: Decimal) -> int:
    """USD → integer nano-dollars (half-even)."""
    return int((amount * NANO_PER_USD).to_integral_value(rounding=ROUND_HALF_EVEN))


# Decimal forms of small nano amounts, which most bills are (a few thousand nano-dollars).
_SMALL: dict[int, Decimal] = {}


def from_nano(amount: int) -> Decimal:
    """Integer nano-dollars → USD as an exact :class:`Decimal` in plain form."""
    if amount == 0:
        return ZERO
    cached = _SMALL.get(amount)
    if cached is not None:
        return cached
    value = plain(Decimal(amount).scaleb(-9))
    if 0 < amount < 1 << 20 and len(_SMALL) < 65536:
        _SMALL[amount] = value
    return value


def quantize(amount: Decimal) -> Decimal:
    """``amount`` rounded (half-even) to a whole number of nano-dollars, in plain form."""
    sign, digits, exponent = amount.as_tuple()
    if not sign and isinstance(exponent, int) and (
            exponent == 0 or (-9 <= exponent < 0 and digits[-1])):
        # Already a whole number of nano-dollars in plain form: rounding changes nothing.
        return amount
    return from_nano(to_nano(amount))


def utcnow() -> datetime:
    """The current time, in UTC."""
    return datetime.now(UTC)
