"""Forms of the account pages: they parse input; the services in accounts/ decide."""

from django import forms
from django.conf import settings
from django.utils import timezone

from accounts.models import RateTier, Role
from billing.plans.onboarding import open_account_for_new_user, signup_plans


class NewKeyForm(forms.Form):
    name = forms.CharField(label="Key name", max_length=100, initial="API key")


class TierRequestForm(forms.Form):
    key_id = forms.CharField(widget=forms.HiddenInput, max_length=32)
    tier = forms.ChoiceField(label="Tier", choices=RateTier.choices)
    reason = forms.CharField(
        label="What do you need it for?",
        required=False,
        max_length=2000,
        widget=forms.Textarea(attrs={"rows": 2}),
    )


class InviteForm(forms.Form):
    email = forms.EmailField(label="Email address")
    role = forms.ChoiceField(label="Role", choices=Role.choices, initial=Role.VIEWER)


class RoleForm(forms.Form):
    role = forms.ChoiceField(label="Role", choices=Role.choices)


class SubaccountForm(forms.Form):
    name = forms.CharField(label="Name", max_length=200)
    plan = forms.ChoiceField(label="Plan")
    email = forms.EmailField(
        label="Billing email", required=False, help_text="Empty: the parent account's."
    )

    def __init__(self, *args, plans=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["plan"].choices = [(p.code, p.name) for p in plans]


class SignupPlanForm(forms.Form):
    """The plan field allauth adds to its sign-up form (ACCOUNT_SIGNUP_FORM_CLASS).

    Only plans staff made selectable at sign-up are offered or accepted (another code is a form
    error); left empty, the sign-up plan setting applies.
    """

    plan = forms.ChoiceField(label="Plan", required=False)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["plan"].choices = [(p.code, p.name) for p in signup_plans()]
        self.fields["plan"].initial = settings.SIGNUP_PLAN_CODE

    def signup(self, request, user):
        """allauth's hook, called once the user is saved: open their account on the plan."""
        open_account_for_new_user(
            user=user, plan_code=self.cleaned_data.get("plan", ""), now=timezone.now()
        )
