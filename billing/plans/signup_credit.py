"""Signup credit is granted once per person, however the email address is spelled (issue 14).

A person can write one mailbox many ways: `Jane.Doe@Gmail.com`, `janedoe+trial@gmail.com` and
`jane.doe@googlemail.com` all reach the same inbox. The claim is the address as the mail
provider reads it, in a table with a unique key, so a second sign-up with another spelling (or
two at the same moment) finds it taken and opens an account without the credit.
"""

from datetime import datetime

from django.db import IntegrityError, transaction

from accounts.models import Account
from billing.models import SignupCreditClaim

# Providers that ignore dots in the local part, and the one domain each is also known by.
DOTLESS_DOMAINS = {"gmail.com": "gmail.com", "googlemail.com": "gmail.com"}


def signup_email_key(email: str) -> str:
    """Return the mailbox `email` reaches: lower case, without a `+tag`, and for Gmail
    without dots and on one domain."""
    local, _, domain = email.strip().lower().rpartition("@")
    if not local:
        return email.strip().lower()  # not an address: compared as it is
    local = local.split("+", 1)[0]
    if domain in DOTLESS_DOMAINS:
        domain = DOTLESS_DOMAINS[domain]
        local = local.replace(".", "")
    return f"{local}@{domain}"


def claim_signup_credit(*, account: Account, email: str, now: datetime) -> bool:
    """Claim the signup credit of the person behind `email` for `account`; return whether it
    is theirs to have (False: that person had it already).

    WARNING (money): the unique key is the claim. A concurrent sign-up with the same key waits
    on PostgreSQL for this transaction and then fails its insert; never check first.
    """
    try:
        with transaction.atomic():  # a savepoint: a taken claim leaves the caller's work alone
            SignupCreditClaim.objects.create(
                email_key=signup_email_key(email)[:254], account=account, claimed_at=now
            )
    except IntegrityError:
        return False
    return True
