"""The usage pages of the dashboard (SPEC D2): breakdowns, charts, the log and CSV exports.

Reading only, so every page needs `Action.VIEW`; all figures come from the rollups, the log
from keyset pages of indexed rows.
"""

from django.shortcuts import render
from django.utils import timezone

from accounts.permissions import Action
from accounts.web.shell import account_page, csv_response
from usage.pages.breakdown import filter_choices, usage_csv_rows, usage_report
from usage.pages.forms import LogFilterForm, UsageFilterForm, period_days
from usage.pages.usage_log import default_log_kind, log_csv_rows, log_page


def _usage_form(request, account) -> UsageFilterForm:
    start, end = period_days(account=account, now=timezone.now())
    return UsageFilterForm(
        request.GET or None,
        initial={"start": start, "end": end},
        default_start=start,
        default_end=end,
    )


@account_page(Action.VIEW)
def usage_page(request, account):
    form = _usage_form(request, account)
    usage_filter = form.usage_filter()
    return render(
        request,
        "usage/usage.html",
        {
            "form": form,
            "report": usage_report(account=account, usage_filter=usage_filter),
            "choices": filter_choices(account=account, since=usage_filter.start.replace(day=1)),
        },
    )


@account_page(Action.VIEW)
def usage_csv(request, account):
    usage_filter = _usage_form(request, account).usage_filter()
    return csv_response(
        usage_csv_rows(account=account, usage_filter=usage_filter),
        filename=f"usage-{account.public_id}-{usage_filter.start}-{usage_filter.end}.csv",
    )


def _log_form(request, account) -> LogFilterForm:
    return LogFilterForm(request.GET or None, default_kind=default_log_kind(account=account))


@account_page(Action.VIEW)
def usage_log(request, account):
    form = _log_form(request, account)
    log_filter = form.log_filter()
    page = log_page(account=account, log_filter=log_filter)
    template = "usage/_log_rows.html" if request.htmx else "usage/log.html"
    return render(request, template, {"form": form, "page": page, "log_filter": log_filter})


@account_page(Action.VIEW)
def usage_log_csv(request, account):
    log_filter = _log_form(request, account).log_filter()
    return csv_response(
        log_csv_rows(account=account, log_filter=log_filter),
        filename=f"{log_filter.kind}-{account.public_id}.csv",
    )
