"""Signal receivers of the accounts app: each makes one call into a service."""

from allauth.account.signals import user_signed_up
from django.dispatch import receiver
from django.utils import timezone

from billing.plans.onboarding import open_account_for_new_user


@receiver(user_signed_up, dispatch_uid="accounts.open_account_for_new_user")
def account_on_sign_up(sender, request, user, **kwargs):
    # The sign-up form opened it already, on the chosen plan (accounts.web.forms.SignupPlanForm);
    # this covers a sign-up by any other path, on the sign-up plan setting.
    open_account_for_new_user(user=user, now=timezone.now())
