"""Who has had the signup credit: one claim per person, however the address is spelled."""

from django.db import models

from accounts.models import Account


class SignupCreditClaim(models.Model):
    """The signup credit given to the person behind `email_key` (SPEC L5; issue 14).

    `email_key` is the address as its mail provider reads it (billing.plans.signup_credit):
    `Jane.Doe+trial@GoogleMail.com` and `janedoe@gmail.com` are one key. Its uniqueness is the
    claim, so two sign-ups at once cannot both insert it and both be credited.
    """

    email_key = models.CharField(max_length=254, unique=True)
    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="+")
    claimed_at = models.DateTimeField()

    def __str__(self):
        return f"signup credit of {self.email_key}"
