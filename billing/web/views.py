"""The dashboard's billing page (SPEC D3): balance and top-up, saved cards, auto-top-up,
recurring credit, alert settings and budgets, recent invoices; and the statement of ledger
entries with its CSV.

The forms of the page are htmx forms: a POST from htmx (`request.htmx`) answers with the
section's fragment, re-rendered with the error beside the field or with "Saved"; the same POST
without JavaScript redirects back to the page, or shows the whole page with the error. Changing
anything needs `Action.MANAGE_BILLING`. The top-up form answers here too, its error beside the
field with the amount as typed; the payment flow behind it (checkout returns, cards) is
billing.web.payment_views, which always comes back here. The payments history is a page of its
own under Billing.
"""

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from accounts.models import ApiKey
from accounts.permissions import Action
from accounts.web.shell import account_page, csv_response
from billing.alerts import balance as alerts
from billing.invoicing import parties
from billing.models import Budget
from billing.money import format_usd, usd_input
from billing.payments import auto_topup, recurring_credit, topups
from billing.web.forms import (
    AlertSettingsForm,
    AutoTopUpForm,
    BillingDetailsForm,
    BudgetForm,
    RecurringCreditForm,
    StatementFilterForm,
    TopUpForm,
)
from billing.web.payment_views import topup_return_urls
from billing.web.selectors import (
    alert_initial,
    auto_topup_initial,
    billing_details_initial,
    billing_page,
    recurring_credit_initial,
    topup_history,
    topup_rows,
)
from billing.web.statement import ledger_csv_rows, ledger_page
from usage.spending import budgets

PAYMENTS_PER_PAGE = 50


def _topup_form(account, *args):
    minimum = topups.minimum_topup_micros(account)
    return TopUpForm(
        *args,
        minimum=format_usd(minimum),
        plan_name=account.subscription.plan.name,
        initial={"amount": usd_input(minimum)},
    )


def _page(request, account, *, status=200, section="", saved="", **forms):
    data = billing_page(account=account, now=timezone.now())
    context = {
        "b": data,
        "topup_form": forms.get("topup_form") or _topup_form(account),
        "auto_form": forms.get("auto_form") or AutoTopUpForm(initial=auto_topup_initial(account)),
        "recurring_form": forms.get("recurring_form")
        or RecurringCreditForm(initial=recurring_credit_initial(account)),
        "alert_form": forms.get("alert_form") or AlertSettingsForm(initial=alert_initial(account)),
        "budget_form": forms.get("budget_form") or BudgetForm(keys=data["keys"]),
        "details_form": forms.get("details_form")
        or BillingDetailsForm(initial=billing_details_initial(account)),
        "saved": saved,
    }
    if request.htmx and section:
        # htmx swaps 2xx answers only: an invalid form is a 200 fragment showing its errors.
        return render(request, f"billing/dashboard/_{section}.html", context)
    return render(request, "billing/dashboard/billing.html", context, status=status)


def _done(request, account, *, section: str, message: str):
    if request.htmx:
        return _page(request, account, section=section, saved=message)
    messages.success(request, message)
    anchor = section.replace("_", "-")
    return redirect(f"{reverse('billing_dashboard:home', args=[account.public_id])}#{anchor}")


@account_page(Action.VIEW)
def billing_home(request, account):
    return _page(request, account)


@account_page(Action.MANAGE_BILLING)
@require_POST
def start_topup(request, account):
    """Open checkout for a top-up; a refused amount shows beside the field, as typed."""
    form = _topup_form(account, request.POST)
    if form.is_valid():
        try:
            started = topups.start_topup(
                account=account,
                amount_micros=form.cleaned_data["amount"],
                now=timezone.now(),
                actor=request.user,
                **topup_return_urls(request, account.public_id),
            )
        except topups.TopUpError as error:
            form.add_error("amount", str(error))
        else:
            return redirect(started.redirect_url)
    return _page(request, account, status=400, topup_form=form)


@account_page(Action.VIEW)
def payments(request, account):
    """Every top-up and card payment of the account, a page at a time."""
    page = Paginator(topup_history(account), PAYMENTS_PER_PAGE).get_page(request.GET.get("page"))
    return render(
        request,
        "billing/dashboard/payments.html",
        {"page": page, "rows": topup_rows(page.object_list)},
    )


@account_page(Action.MANAGE_BILLING)
@require_POST
def save_auto_topup(request, account):
    form = AutoTopUpForm(request.POST)
    if form.is_valid():
        data = form.cleaned_data
        try:
            auto_topup.save_auto_topup_settings(
                account=account,
                enabled=data["enabled"],
                threshold_micros=data["threshold"],
                amount_micros=data["amount"],
                target_micros=data["target"],
                monthly_cap_micros=data["monthly_cap"],
                now=timezone.now(),
            )
        except auto_topup.AutoTopUpError as error:
            form.add_error(None, str(error))
        else:
            return _done(request, account, section="auto_topup", message="Auto-top-up saved.")
    return _page(request, account, status=400, section="auto_topup", auto_form=form)


@account_page(Action.MANAGE_BILLING)
@require_POST
def save_recurring_credit(request, account):
    form = RecurringCreditForm(request.POST)
    if form.is_valid():
        data = form.cleaned_data
        try:
            recurring_credit.save_recurring_credit(
                account=account,
                enabled=data["enabled"],
                amount_micros=data["amount"],
                now=timezone.now(),
            )
        except recurring_credit.RecurringCreditError as error:
            form.add_error(None, str(error))
        else:
            return _done(
                request, account, section="recurring_credit", message="Recurring credit saved."
            )
    return _page(request, account, status=400, section="recurring_credit", recurring_form=form)


@account_page(Action.MANAGE_BILLING)
@require_POST
def save_alerts(request, account):
    form = AlertSettingsForm(request.POST)
    if form.is_valid():
        threshold = form.cleaned_data["threshold"]
        alerts.update_alert_settings(
            account=account,
            now=timezone.now(),
            low_balance_threshold_micros=threshold,
            use_plan_threshold=threshold is None,
            **form.email_choices(),
        )
        return _done(request, account, section="alerts", message="Alert settings saved.")
    return _page(request, account, status=400, section="alerts", alert_form=form)


@account_page(Action.MANAGE_BILLING)
@require_POST
def save_billing_details(request, account):
    form = BillingDetailsForm(request.POST)
    if form.is_valid():
        try:
            parties.save_billing_details(account=account, now=timezone.now(), **form.cleaned_data)
        except parties.BillingDetailsError as error:
            form.add_error("address", str(error))
        else:
            return _done(
                request, account, section="billing_details", message="Billing details saved."
            )
    return _page(request, account, status=400, section="billing_details", details_form=form)


@account_page(Action.MANAGE_BILLING)
@require_POST
def add_budget(request, account):
    keys = ApiKey.objects.filter(account=account, revoked_at__isnull=True)
    form = BudgetForm(request.POST, keys=keys)
    if form.is_valid():
        data = form.cleaned_data
        try:
            budgets.create_budget(
                account=account,
                name=data["name"],
                amount_micros=data["amount"],
                hard=data["hard"],
                api_key=keys.filter(key_id=data["key"]).first() if data["key"] else None,
                now=timezone.now(),
            )
        except budgets.BudgetError as error:
            form.add_error(None, str(error))
        else:
            return _done(request, account, section="budgets", message="Budget added.")
    return _page(request, account, status=400, section="budgets", budget_form=form)


@account_page(Action.MANAGE_BILLING)
@require_POST
def delete_budget(request, account, budget_id):
    budget = Budget.objects.filter(account=account, pk=budget_id).first()
    if budget is None:
        raise Http404("No such budget.")
    budgets.delete_budget(budget=budget)
    return _done(request, account, section="budgets", message="Budget removed.")


@account_page(Action.VIEW)
def statement(request, account):
    form = StatementFilterForm(request.GET or None)
    page = ledger_page(account=account, cursor=request.GET.get("after", ""), **form.filters())
    template = (
        "billing/dashboard/_statement_rows.html"
        if request.htmx
        else "billing/dashboard/statement.html"
    )
    return render(request, template, {"form": form, "page": page})


@account_page(Action.VIEW)
def statement_csv(request, account):
    form = StatementFilterForm(request.GET or None)
    return csv_response(
        ledger_csv_rows(account=account, **form.filters()),
        filename=f"ledger-{account.public_id}.csv",
    )
