from django import template

from billing.money import format_usd

register = template.Library()


@register.filter
def usd(micros, places=2):
    """Render micro-dollars for people: {{ account.balance_micros|usd }} or |usd:6."""
    if micros is None or micros == "":
        return ""
    return format_usd(int(micros), places=int(places))
