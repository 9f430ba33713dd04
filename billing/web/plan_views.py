"""Plan pages of the Billing page (SPEC F2): compare the plans open to the account, preview a
change, confirm it. Post/redirect/get: a confirmed change redirects to the Billing page; a
refused one (a stale preview, a plan no longer open) shows the preview again with the reason.
Changing the plan needs `Action.MANAGE_BILLING` (owners, admins and billing members).
"""

from django.contrib import messages
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from accounts.permissions import Action
from accounts.web.shell import account_page
from billing import staff
from billing.models import Plan, Subscription
from billing.payments.plan_changes import preview_plan_change, self_serve_timing
from billing.web.plan_forms import ConfirmPlanForm, PlanChoiceForm
from billing.web.plan_selectors import plan_options, plans_open_to


def _choices(account) -> list[Plan]:
    current = Subscription.objects.values_list("plan_id", flat=True).get(account=account)
    return [plan for plan in plans_open_to(account=account) if plan.pk != current]


def _compare(request, account, *, form, status=200):
    context = {"options": plan_options(account=account, now=timezone.now()), "form": form}
    return render(request, "billing/plans/compare.html", context, status=status)


def _preview(request, account, *, plan, error="", status=200):
    now = timezone.now()
    subscription = Subscription.objects.select_related("plan").get(account=account)
    when = self_serve_timing(old_plan=subscription.plan, new_plan=plan, at=now)
    preview = preview_plan_change(
        account=account, subscription=subscription, plan=plan, when=when, now=now
    )
    form = ConfirmPlanForm(
        plans=_choices(account),
        initial={"plan": plan.code, "fingerprint": preview.fingerprint, "previewed_at": now},
    )
    context = {"preview": preview, "form": form, "error": error}
    return render(request, "billing/plans/preview.html", context, status=status)


@account_page(Action.VIEW)
@require_GET
def compare_plans(request, account):
    return _compare(request, account, form=PlanChoiceForm(plans=_choices(account)))


@account_page(Action.MANAGE_BILLING)
@require_GET
def preview_change(request, account):
    form = PlanChoiceForm(request.GET, plans=_choices(account))
    if not form.is_valid():
        return _compare(request, account, form=form, status=400)
    return _preview(request, account, plan=Plan.objects.get(code=form.cleaned_data["plan"]))


@account_page(Action.MANAGE_BILLING)
@require_POST
def confirm_change(request, account):
    form = ConfirmPlanForm(request.POST, plans=_choices(account))
    if not form.is_valid():
        if "plan" in form.errors:
            return _compare(request, account, form=form, status=400)
        return _preview(
            request,
            account,
            plan=Plan.objects.get(code=form.cleaned_data["plan"]),
            error="This preview is incomplete. Review the change again.",
            status=400,
        )
    plan = Plan.objects.get(code=form.cleaned_data["plan"])
    try:
        outcome = staff.change_own_plan(
            account=account,
            plan=plan,
            user=request.user,
            fingerprint=form.cleaned_data["fingerprint"],
            previewed_at=form.cleaned_data["previewed_at"],
            key=form.cleaned_data["key"],
            now=timezone.now(),
        )
    except staff.StaffActionError as error:
        return _preview(request, account, plan=plan, error=str(error), status=400)
    messages.success(request, outcome.message)
    return redirect(f"{reverse('billing_dashboard:home', args=[account.public_id])}#plan")
