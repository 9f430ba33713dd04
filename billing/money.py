"""Money: integers of micro-dollars, and the only places they are rounded or converted (SPEC L1).

WARNING: every amount of money in Meterline is an `int` of micro-dollars (1 USD = 1,000,000).
Rates are exact `Decimal`s. A float never touches money. A charge is rounded once, half-up to the
micro-dollar, by `round_micros`, except a commission on savings, rounded down by
`round_commission_micros`; Stripe's cents and people's text come from this module only.

Text for people follows one rule (docs/billing-rules.md, "Money as people read it"): balances,
totals and documents read in cents (`format_usd`), a single usage item or a unit rate reads with
the decimals it needs (`format_usd_exact`, `format_rate`), and the exact figure of a rounded
amount stays one hover away (`exact_title`). The API and CSV exports keep six decimals
(`micros_to_api`).
"""

import re
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal, InvalidOperation

MICROS_PER_USD = 1_000_000
MICROS_PER_CENT = 10_000
# The smallest card charge the payment provider accepts: Stripe refuses less than 0.50 USD
# (`amount_too_small`), and so does the test-mode gateway. An invoice that would ask less is
# not charged but carried to the next one (docs/billing-rules.md, issue 14 items 3 and 5).
MINIMUM_CARD_CHARGE_MICROS = 500_000


class MoneyError(ValueError):
    """Text that is not an amount of USD we can represent."""


def round_micros(amount_usd: Decimal) -> int:
    """Round an exact USD amount half-up (away from zero) to whole micro-dollars.

    This is the one rounding rule of every charge: compute the exact cost in Decimal, then call
    this once. 83 s at 0.08 USD/min is 0.11066666... USD, which rounds to 110,667 micros.
    """
    micros = (Decimal(amount_usd) * MICROS_PER_USD).quantize(Decimal(1), rounding=ROUND_HALF_UP)
    return int(micros)


def round_commission_micros(fee_usd: Decimal) -> int:
    """Round an exact commission on savings down (toward zero) to whole micro-dollars.

    The one exception to half-up: document 004 promises the customer is never charged more than
    the plan's percentage of the measured savings, and rounding a fee up breaks that promise on
    tiny savings (20% of 0.0000025 USD is 0.0000005 USD, which half-up makes 0.000001, 40%).
    Rounding down keeps every commission at or below its percentage.
    """
    micros = (Decimal(fee_usd) * MICROS_PER_USD).quantize(Decimal(1), rounding=ROUND_DOWN)
    return int(micros)


# What a person or a client writes as an amount: digits with an optional sign and decimal point.
# Decimal() would also read "1e3", "1_000" or "NaN"; nobody means 1,000 USD by "1e3".
PLAIN_AMOUNT = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)")


def usd_to_micros(value: str | Decimal | int) -> int:
    """Parse an amount in USD ('12.50', Decimal, int) with at most six decimals.

    Text must be written out plainly (no exponent, no underscores).
    """
    if isinstance(value, float):
        raise MoneyError("Money must not be a float; pass a string or Decimal.")
    if isinstance(value, str) and not PLAIN_AMOUNT.fullmatch(value.strip()):
        raise MoneyError(f"'{value}' is not an amount of USD.")
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        raise MoneyError(f"'{value}' is not an amount of USD.") from None
    if not amount.is_finite():
        raise MoneyError(f"'{value}' is not an amount of USD.")
    # Compare before any arithmetic: Decimal arithmetic rounds to 28 digits (which would drop a
    # seventh decimal written far to the right) and overflows on huge exponents.
    if abs(amount) >= 10**9:
        raise MoneyError(f"'{value}' is too large.")
    whole_micros = amount.quantize(Decimal("0.000001"))  # at most 15 digits: exact
    if whole_micros != amount:
        raise MoneyError(f"'{value}' has more than six decimals.")
    return int(whole_micros * MICROS_PER_USD)


def micros_to_api(micros: int) -> str:
    """Return the API's decimal string for an amount: six decimals, never a float (SPEC 11)."""
    sign = "-" if micros < 0 else ""
    whole, frac = divmod(abs(micros), MICROS_PER_USD)
    return f"{sign}{whole}.{frac:06d}"


def micros_to_cents(micros: int) -> int:
    """Convert to Stripe's integer cents. Only whole cents may be sent to a payment provider."""
    cents, rest = divmod(micros, MICROS_PER_CENT)
    if rest:
        raise MoneyError(f"{micros_to_api(micros)} USD is not a whole number of cents.")
    return cents


def cents_to_micros(cents: int) -> int:
    return int(cents) * MICROS_PER_CENT


def round_to_cents(micros: int) -> int:
    """Round half-up (away from zero) to whole cents, for display and for card charges."""
    cents = (Decimal(micros) / MICROS_PER_CENT).quantize(Decimal(1), rounding=ROUND_HALF_UP)
    return int(cents) * MICROS_PER_CENT


def cents_rounding(*, total_micros: int, line_micros: list[int]) -> int:
    """Return what a document in cents needs on a "Rounding" line so its column adds up.

    Display only: each line and the total are rounded to cents on their own (half-up), so
    their sum can miss the total by a cent or two; this is that difference. What is charged
    is the stored total rounded once (`Invoice.amount_due_micros`), never this sum.
    """
    return round_to_cents(total_micros) - sum(round_to_cents(m) for m in line_micros)


def format_usd(micros: int, *, places: int = 2) -> str:
    """Return '$1,234.56' (places=2, rounded half-up) or '$0.110667' (places=6) for people.

    Cents are what people read for balances, totals and documents; six places are for staff
    pages, where the exact ledger figure matters more than readability.
    """
    if places not in (2, 6):
        raise ValueError("places is 2 or 6")
    if places == 2:
        micros = round_to_cents(micros)
    sign = "-" if micros < 0 else ""
    whole, frac = divmod(abs(micros), MICROS_PER_USD)
    frac_text = f"{frac:06d}"[:places]
    return f"{sign}${whole:,}.{frac_text}"


def format_usd_exact(micros: int) -> str:
    """Return an amount with the decimals it needs, at least two: '$0.110667', '$1.50'.

    For a single usage item, whose cost is often a fraction of a cent: rounding it to cents
    would show most calls as '$0.00' or '$0.11' and hide what was really taken.
    """
    sign = "-" if micros < 0 else ""
    whole, frac = divmod(abs(micros), MICROS_PER_USD)
    frac_text = f"{frac:06d}".rstrip("0").ljust(2, "0")
    return f"{sign}${whole:,}.{frac_text}"


def exact_title(micros: int) -> str:
    """Return the hover text of an amount shown in cents, or '' when cents show it exactly."""
    if micros % MICROS_PER_CENT == 0:
        return ""
    return f"Exactly {format_usd_exact(micros)}"


def format_rate(rate_usd: Decimal) -> str:
    """Return a unit rate with the decimals it needs, at least two: '$0.08', '$0.0035', '$2.50'.

    Rates are exact Decimals and are never rounded for display: a rate of 0.0035 per minute
    shown as '$0.00' would be wrong, not just imprecise.
    """
    rate = Decimal(rate_usd)
    sign = "-" if rate < 0 else ""
    text = f"{abs(rate):f}"
    whole, _, frac = text.partition(".")
    frac = frac.rstrip("0").ljust(2, "0")
    return f"{sign}${int(whole):,}.{frac}"


def usd_input(micros: int | None) -> str:
    """Return an amount as a form field holds it: '20.00', '0.125', or '' for none.

    No currency sign or thousands separator, so the same text parses back with `usd_to_micros`.
    """
    if micros is None:
        return ""
    return format_usd_exact(micros).replace("$", "").replace(",", "")
