"""The "Your plan and rates" panel of the Billing page, as an inclusion tag, so the page's own
view (billing.web.views) needs no change: `{% load plans %}{% plan_panel account can %}`."""

from django import template
from django.utils import timezone

from billing.web.plan_selectors import plan_panel as plan_panel_data

register = template.Library()


@register.inclusion_tag("billing/dashboard/_plan.html")
def plan_panel(account, can):
    return {
        "account": account,
        "can": can,
        "p": plan_panel_data(account=account, now=timezone.now()),
    }
