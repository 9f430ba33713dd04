"""GET forms of the usage pages: they parse and check the query string, nothing more."""

from datetime import date, datetime, timedelta

from django import forms

from accounts.models import Account
from billing.models import Subscription
from billing.periods import current_period
from usage.models import CallStatus, EventType
from usage.pages.breakdown import MAX_RANGE_DAYS, UsageFilter
from usage.pages.usage_log import LogFilter


def period_days(*, account: Account, now: datetime) -> tuple[date, date]:
    """Return the first day of the account's current period and today: the default range."""
    subscription = Subscription.objects.filter(account=account).first()
    if subscription is None:
        return now.date() - timedelta(days=29), now.date()
    start, _ = current_period(subscription=subscription, now=now)
    return start.date(), now.date()


REVERSED_RANGE = "The range ends before it starts."


def check_range(start: date | None, end: date | None) -> None:
    """Refuse a date range whose end comes before its start, the same way on every page."""
    if start and end and end < start:
        raise forms.ValidationError(REVERSED_RANGE)


class UsageFilterForm(forms.Form):
    start = forms.DateField(
        label="From", required=False, widget=forms.DateInput(attrs={"type": "date"})
    )
    end = forms.DateField(
        label="To", required=False, widget=forms.DateInput(attrs={"type": "date"})
    )
    component = forms.CharField(label="Usage", required=False, max_length=16)
    provider = forms.CharField(label="Provider", required=False, max_length=50)
    model = forms.CharField(label="Model", required=False, max_length=100)

    def __init__(self, data, *, default_start: date, default_end: date, initial=None):
        super().__init__(data, initial=initial)
        self.default_start, self.default_end = default_start, default_end

    def clean(self):
        cleaned = super().clean()
        start = cleaned.get("start") or self.default_start
        end = cleaned.get("end") or self.default_end
        check_range(start, end)
        if (end - start).days >= MAX_RANGE_DAYS:
            raise forms.ValidationError(f"Choose a range of at most {MAX_RANGE_DAYS} days.")
        cleaned["start"], cleaned["end"] = start, end
        return cleaned

    def usage_filter(self) -> UsageFilter:
        """Return the filter asked for, or the default range when the form is invalid."""
        if not self.is_valid():
            return UsageFilter(start=self.default_start, end=self.default_end)
        data = self.cleaned_data
        return UsageFilter(
            start=data["start"],
            end=data["end"],
            component=data.get("component") or "",
            provider=data.get("provider") or "",
            model=data.get("model") or "",
        )


class LogFilterForm(forms.Form):
    kind = forms.ChoiceField(
        label="Show",
        choices=[("calls", "Calls"), ("events", "Requests and messages")],
        required=False,
    )
    start = forms.DateField(
        label="From", required=False, widget=forms.DateInput(attrs={"type": "date"})
    )
    end = forms.DateField(
        label="To", required=False, widget=forms.DateInput(attrs={"type": "date"})
    )
    # Calls are filtered by their status, requests and messages by their type: one list each,
    # chosen by the kind shown, never the two mixed in one list.
    status = forms.ChoiceField(label="Status", required=False)
    model = forms.CharField(label="Model or LLM", required=False, max_length=100)
    refunded = forms.BooleanField(label="Refunded only", required=False)
    after = forms.CharField(required=False, max_length=80, widget=forms.HiddenInput)

    def __init__(self, data, *, default_kind: str):
        super().__init__(data)
        self.default_kind = default_kind
        kind = (data or {}).get("kind") or default_kind
        if kind == "events":
            self.fields["status"].label = "Type"
            self.fields["status"].choices = [("", "Any"), *EventType.choices]
        else:
            self.fields["status"].choices = [("", "Any"), *CallStatus.choices]

    def clean(self):
        cleaned = super().clean()
        check_range(cleaned.get("start"), cleaned.get("end"))
        return cleaned

    def log_filter(self) -> LogFilter:
        if not self.is_valid():
            return LogFilter(kind=self.default_kind)
        data = self.cleaned_data
        return LogFilter(
            kind=data.get("kind") or self.default_kind,
            start=data.get("start"),
            end=data.get("end"),
            status=data.get("status") or "",
            model=data.get("model") or "",
            refunded_only=bool(data.get("refunded")),
            cursor=data.get("after") or "",
        )
