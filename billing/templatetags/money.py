"""Money in templates, by the rule of billing.money: cents for people, the exact figure on hover."""

from django import template
from django.utils.html import format_html

from billing.money import exact_title, format_usd, format_usd_exact

register = template.Library()


@register.filter
def usd(micros, places=2):
    """Render micro-dollars for people: {{ account.balance_micros|usd }} (cents).

    `|usd:6` is for staff pages only; customer pages use `|money` or `|usd_exact`.
    """
    if micros is None or micros == "":
        return ""
    return format_usd(int(micros), places=int(places))


@register.filter
def money(micros):
    """Render a balance or total in cents, with the exact figure as its hover text if it differs."""
    if micros is None or micros == "":
        return ""
    micros = int(micros)
    title = exact_title(micros)
    if not title:
        return format_usd(micros)
    return format_html('<span class="exact" title="{}">{}</span>', title, format_usd(micros))


@register.filter
def usd_exact(micros):
    """Render a single usage item's cost with the decimals it needs: '$0.110667'."""
    if micros is None or micros == "":
        return ""
    return format_usd_exact(int(micros))
