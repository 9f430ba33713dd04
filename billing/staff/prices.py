"""Staff adding rates and model prices (SPEC S1): they take effect from now on, never from the past
unless staff confirm, audited, that they re-price usage from that moment.

A price whose `effective_from` is in the past never rewrites a charge already made, but every
item of that window reported from now on (usage may arrive 35 days late, U10) would be rated at
it: the same call would cost one price reported yesterday and another reported today. So a past
date is refused unless the staff member confirms re-pricing usage from it, and the confirmation
is written to the audit trail with the price and the window it re-prices.
"""

import re
from datetime import datetime

from accounts.models import User
from billing.models import AuditRecord, ModelPrice, Rate, RateComponent, StaffAction
from billing.staff.audit import Audit


def past_price_problem(
    *, effective_from: datetime | None, now: datetime, confirmed: bool
) -> str | None:
    """Return why a price taking effect at `effective_from` cannot be saved at `now`, or None.

    A moment before `now` needs the staff member's confirmation (`confirmed`).
    """
    if effective_from is None or effective_from >= now or confirmed:
        return None
    return (
        f"{effective_from:%Y-%m-%d %H:%M} UTC is in the past. Usage charged already keeps its "
        "price, but usage of that window reported from now on (up to 35 days late) would be "
        "priced at this one. Choose a moment from now on, or confirm re-pricing usage from "
        f"{effective_from:%Y-%m-%d %H:%M} UTC."
    )


# Called numbers are matched in E.164 (usage.rating.destinations): a country code and digits
# after a "+", at most 15 digits.
E164_PREFIX = re.compile(r"\+[1-9]\d{0,14}")


def rate_key_problem(*, component: str | None, key: str) -> str | None:
    """Return why `key` cannot name a rate of `component`, or None.

    A destination prefix that is not in E.164 ("44", "0044 20") would never match a number,
    since every reported number is kept in E.164: its surcharge would silently never apply.
    """
    if component == RateComponent.DESTINATION and not E164_PREFIX.fullmatch(key or ""):
        return "A destination prefix is in E.164: '+' then the country code and digits, e.g. +4420."
    return None


def record_past_price(
    *, price: Rate | ModelPrice, actor: User, now: datetime
) -> AuditRecord | None:
    """Write the audit record of a price saved with a confirmed past `effective_from`; nothing
    for a price that takes effect from now on. Call in the transaction that saves the price."""
    if price.effective_from >= now:
        return None
    window = {"from": price.effective_from.isoformat(), "to": now.isoformat()}
    if isinstance(price, Rate):
        owner = price.plan.code if price.plan_id else f"account {price.account.public_id}"
        what = {
            "rate": str(price.pk),
            "owner": owner,
            "component": price.component,
            "key": price.key,
            "price": str(price.price),
        }
        account = price.account if price.account_id else None
    else:
        what = {
            "model_price": str(price.pk),
            "provider": price.provider,
            "model": price.model,
            "input_per_million": str(price.input_per_million),
            "output_per_million": str(price.output_per_million),
        }
        account = None
    audit = Audit(
        action=StaffAction.REPRICE_PAST,
        actor=actor,
        reason=f"Confirmed re-pricing usage from {price.effective_from:%Y-%m-%d %H:%M} UTC "
        f"({price}).",
        # One record per saved version of the price.
        key=f"{price._meta.model_name}:{price.pk}:{now.isoformat()}",
        now=now,
    )
    return audit.write(account=account, before={}, after={**what, "reprices": window}, target=price)
