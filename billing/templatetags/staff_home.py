"""What the admin index tells a staff member about refunds waiting for a second approval."""

from django import template

from billing.staff.approval_requests import approvals_waiting

register = template.Library()


@register.simple_tag
def waiting_approvals(user) -> dict:
    """{% waiting_approvals request.user as waiting %}: waiting.to_decide, waiting.own."""
    return approvals_waiting(user=user)
