"""Forms of the plan change pages: which plan, and the confirmation of a preview."""

import uuid

from django import forms


class PlanChoiceForm(forms.Form):
    plan = forms.ChoiceField(label="New plan", widget=forms.RadioSelect)

    def __init__(self, *args, plans, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["plan"].choices = [(p.code, p.name) for p in plans]
        self.fields["plan"].error_messages["invalid_choice"] = (
            "Choose one of the plans listed; that one is not open to this account."
        )


class ConfirmPlanForm(PlanChoiceForm):
    """The preview's figures as the customer saw them: a change since is refused."""

    fingerprint = forms.CharField(widget=forms.HiddenInput, max_length=64)
    previewed_at = forms.DateTimeField(widget=forms.HiddenInput)
    # One-time token: a double submission changes the plan once (billing.staff.audit).
    key = forms.CharField(widget=forms.HiddenInput, max_length=64, initial=lambda: uuid.uuid4().hex)
