"""Forms of the billing page: they parse amounts of USD; the services decide what is allowed."""

from django import forms

from billing.models import AlertSettings, EntryKind
from billing.money import MoneyError, usd_to_micros


def _usd_field(label: str, *, required: bool = False, help_text: str = "") -> forms.CharField:
    return forms.CharField(
        label=label,
        required=required,
        max_length=20,
        help_text=help_text,
        widget=forms.TextInput(attrs={"inputmode": "decimal", "autocomplete": "off"}),
    )


def _micros(form: forms.Form, name: str) -> int | None:
    text = (form.cleaned_data.get(name) or "").strip().lstrip("$").replace(",", "")
    if not text:
        return None
    try:
        return usd_to_micros(text)
    except MoneyError:
        raise forms.ValidationError("Enter an amount in USD, such as 25 or 12.50.") from None


class TopUpForm(forms.Form):
    amount = _usd_field("Amount in USD", required=True)

    def __init__(self, *args, minimum: str, plan_name: str, **kwargs):
        # Its own ids: the auto-top-up form on the same page also has `amount`.
        kwargs.setdefault("auto_id", "id_topup_%s")
        super().__init__(*args, **kwargs)
        self.fields["amount"].help_text = (
            f"At least {minimum} on the {plan_name} plan. Credit is added once the payment is "
            "confirmed."
        )

    def clean_amount(self):
        return _micros(self, "amount")


class AutoTopUpForm(forms.Form):
    enabled = forms.BooleanField(label="Top up automatically", required=False)
    threshold = _usd_field("When the balance falls below (USD)", required=True)
    amount = _usd_field("Add this amount (USD)")
    target = _usd_field("…or bring the balance up to (USD)")
    monthly_cap = _usd_field("At most per month (USD, optional)")

    def clean_threshold(self):
        return _micros(self, "threshold")

    def clean_amount(self):
        return _micros(self, "amount")

    def clean_target(self):
        return _micros(self, "target")

    def clean_monthly_cap(self):
        return _micros(self, "monthly_cap")


class RecurringCreditForm(forms.Form):
    enabled = forms.BooleanField(label="Buy credit every billing period", required=False)
    amount = _usd_field(
        "Amount to buy each period (USD)",
        required=True,
        help_text="Charged to your default card when each billing period starts.",
    )

    def __init__(self, *args, **kwargs):
        # Its own ids: the auto-top-up form on the same page also has `enabled` and `amount`.
        kwargs.setdefault("auto_id", "id_recurring_%s")
        super().__init__(*args, **kwargs)

    def clean_amount(self):
        return _micros(self, "amount")


EMAIL_FIELDS = [f for f in AlertSettings._meta.fields if f.name.startswith("email_")]


class AlertSettingsForm(forms.Form):
    threshold = _usd_field(
        "Email me when the balance falls below (USD)",
        help_text="Leave empty to use the plan's default.",
    )

    def __init__(self, *args, **kwargs):
        # Its own ids: the auto-top-up form on the same page also has `threshold`.
        kwargs.setdefault("auto_id", "id_alert_%s")
        super().__init__(*args, **kwargs)
        for field in EMAIL_FIELDS:
            self.fields[field.name] = forms.BooleanField(
                label=str(field.verbose_name), required=False
            )

    def clean_threshold(self):
        value = _micros(self, "threshold")
        if value is not None and value < 0:
            raise forms.ValidationError("The threshold cannot be negative.")
        return value

    def email_choices(self) -> dict[str, bool]:
        return {f.name: self.cleaned_data.get(f.name, False) for f in EMAIL_FIELDS}

    def email_fields(self):
        return [self[f.name] for f in EMAIL_FIELDS]


class BillingDetailsForm(forms.Form):
    """The customer's legal identity on invoices and receipts (billing.invoicing.parties)."""

    legal_name = forms.CharField(
        label="Legal name",
        max_length=200,
        required=False,
        help_text="As it should appear on invoices; the account's name when empty.",
    )
    address = forms.CharField(
        label="Address", max_length=500, required=False, widget=forms.Textarea(attrs={"rows": 3})
    )
    country = forms.CharField(label="Country", max_length=100, required=False)
    tax_id = forms.CharField(
        label="Tax ID", max_length=50, required=False, help_text="VAT, GST or other tax number."
    )


class BudgetForm(forms.Form):
    name = forms.CharField(label="Name", max_length=100)
    amount = _usd_field("Monthly amount (USD)", required=True)
    hard = forms.BooleanField(
        label="Hard limit: refuse billable usage once reached (else: email only)",
        required=False,
    )
    key = forms.ChoiceField(label="Applies to", required=False)

    def __init__(self, *args, keys=(), **kwargs):
        # Its own ids: the auto-top-up form on the same page also has `amount`.
        kwargs.setdefault("auto_id", "id_budget_%s")
        super().__init__(*args, **kwargs)
        self.fields["key"].choices = [("", "Every key of the account")] + [
            (k.key_id, f"Key {k.name} ({k.key_id})") for k in keys
        ]

    def clean_amount(self):
        value = _micros(self, "amount")
        if value is None or value <= 0:
            raise forms.ValidationError("A budget is an amount above zero.")
        return value


class StatementFilterForm(forms.Form):
    start = forms.DateField(
        label="From", required=False, widget=forms.DateInput(attrs={"type": "date"})
    )
    end = forms.DateField(
        label="To", required=False, widget=forms.DateInput(attrs={"type": "date"})
    )
    kind = forms.ChoiceField(label="Kind", required=False)
    after = forms.CharField(required=False, max_length=80, widget=forms.HiddenInput)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["kind"].choices = [("", "Any"), *EntryKind.choices]

    def filters(self) -> dict:
        if not self.is_valid():
            return {}
        data = self.cleaned_data
        return {"start": data["start"], "end": data["end"], "kind": data["kind"] or ""}
