"""The operator's customers by their own ids, for the platform API (SPEC X1, issue 15).

The platform opens, reads and changes its customers by `external_id` (its own user or workspace
id) with the platform key: accounts are opened by `billing.plans.onboarding.create_account`
(without signup credit: the operator is not a person signing up), plans change by the staff
rule (`billing.staff.plans`), credit is granted by the staff grant (`billing.staff.credit`);
each is audited as done by the platform key.
"""

import uuid
from datetime import datetime

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction

from accounts.models import Account, ApiKey
from accounts.permissions import MAX_ACCOUNT_DEPTH
from billing import events
from billing.models import Plan
from billing.plans.onboarding import OnboardingError, create_account
from billing.plans.subaccounts import account_depth
from billing.staff.audit import Outcome
from billing.staff.checks import StaffActionError
from billing.staff.credit import grant_credit_by_key
from billing.staff.plans import change_plan_by_key

MAX_EMAILS = 10


class CustomerError(ValueError):
    """Refused customer input; nothing was written. `status` is the HTTP answer."""

    status = 400


class CustomerNotFound(CustomerError):
    status = 404


class CustomerExists(CustomerError):
    """The external id names a customer already (the unique constraint said so)."""

    status = 409

    def __init__(self, existing: Account):
        super().__init__(
            f"A customer with external_id '{existing.external_id}' exists already: "
            f"{existing.public_id}."
        )
        self.existing = existing


def customer_by_external_id(external_id: str) -> Account:
    """Return the account with the operator's id, or raise CustomerNotFound."""
    account = (
        Account.objects.select_related("subscription__plan", "subscription__pending_plan", "parent")
        .filter(external_id=external_id)
        .first()
    )
    if account is None:
        raise CustomerNotFound(f"No customer with external_id '{external_id}'.")
    return account


def _clean_emails(emails: list[str]) -> list[str]:
    cleaned = []
    for email in emails:
        email = email.strip().lower()
        try:
            validate_email(email)
        except ValidationError:
            raise CustomerError(f"'{email}' is not an email address.") from None
        if email not in cleaned:
            cleaned.append(email)
    if not cleaned:
        raise CustomerError("Give at least one billing email.")
    if len(cleaned) > MAX_EMAILS:
        raise CustomerError(f"At most {MAX_EMAILS} billing emails.")
    return cleaned


def _plan(code: str) -> Plan:
    plan = Plan.objects.filter(code=code).first()
    if plan is None:
        raise CustomerError(f"No plan '{code}'.")
    return plan


def open_customer(
    *,
    external_id: str,
    name: str,
    emails: list[str],
    plan_code: str,
    now: datetime,
    parent_external_id: str = "",
    metadata: dict[str, str] | None = None,
    credit_micros: int = 0,
) -> Account:
    """Open the account of the operator's customer `external_id` on a plan.

    The partial unique constraint on external_id is the claim: two requests for one id at once
    open one account, and the other gets CustomerExists naming it.
    """
    emails = _clean_emails(emails)
    plan = _plan(plan_code)
    parent = None
    if parent_external_id:
        parent = Account.objects.filter(external_id=parent_external_id).first()
        if parent is None:
            raise CustomerError(f"No customer with external_id '{parent_external_id}' (parent).")
        if account_depth(parent) >= MAX_ACCOUNT_DEPTH:
            raise CustomerError("Subaccounts can be nested at most a few levels deep.")
    # The common repeat (a retry, a second sign-up hook) is answered without attempting the
    # insert; the constraint below still decides between two requests at the same moment.
    existing = Account.objects.filter(external_id=external_id).first()
    if existing is not None:
        raise CustomerExists(existing)
    try:
        with transaction.atomic():
            return create_account(
                name=name,
                email=emails[0],
                extra_billing_emails=emails[1:],
                plan=plan,
                now=now,
                parent=parent,
                external_id=external_id,
                metadata=metadata,
                credit_micros=credit_micros,
                signup_credit=False,
            )
    except OnboardingError as exc:
        raise CustomerError(str(exc)) from None
    except IntegrityError:
        existing = Account.objects.filter(external_id=external_id).first()
        if existing is None:
            raise
        raise CustomerExists(existing) from None


def update_customer(
    *,
    account: Account,
    api_key: ApiKey,
    now: datetime,
    name: str | None = None,
    emails: list[str] | None = None,
    metadata: dict[str, str] | None = None,
    plan_code: str = "",
    effective: str = "now",
) -> Account:
    """Change a customer's name, billing emails, metadata and plan, all or nothing.

    A plan change follows the staff rule (S2): `effective` is "now" or "next_period".
    """
    fields = {}
    if name is not None:
        if not name.strip():
            raise CustomerError("A customer needs a name.")
        fields["name"] = name.strip()[:200]
    if emails is not None:
        cleaned = _clean_emails(emails)
        fields["email"], fields["extra_billing_emails"] = cleaned[0], "\n".join(cleaned[1:])
    if metadata is not None:
        fields["metadata"] = metadata
    plan = _plan(plan_code) if plan_code else None
    with transaction.atomic():
        if fields:
            Account.objects.filter(pk=account.pk).update(**fields)
            updated = Account.objects.select_related("subscription__plan").get(pk=account.pk)
            # One customer.updated for the fields changed here; a plan change made now sends
            # its own (billing.staff.plans), so a PATCH of both sends two.
            events.customer_updated(
                account=updated,
                plan=updated.subscription.plan,
                changed={"emails" if "email" in field else field for field in fields},
                now=now,
            )
        if plan is not None:
            try:
                change_plan_by_key(
                    account=account,
                    plan=plan,
                    when=effective,
                    api_key=api_key,
                    key=uuid.uuid4().hex,
                    now=now,
                )
            except StaffActionError as exc:
                raise CustomerError(str(exc)) from None
    return customer_by_external_id(account.external_id)


def grant_customer_credit(
    *,
    account: Account,
    amount_micros: int,
    reason: str,
    api_key: ApiKey,
    now: datetime,
    expires_at: datetime | None = None,
    priority: int = 0,
) -> Outcome:
    """Grant the customer promotional credit, audited as done by the platform key."""
    try:
        return grant_credit_by_key(
            account=account,
            amount_micros=amount_micros,
            reason=reason,
            api_key=api_key,
            key=uuid.uuid4().hex,
            now=now,
            expires_at=expires_at,
            priority=priority,
        )
    except StaffActionError as exc:
        raise CustomerError(str(exc)) from None


def customers_page(*, limit: int, starting_after: str = "") -> tuple[list[Account], bool]:
    """Return a page of the customers that have an external id, newest first, and whether more
    follow: the API's `limit` and `starting_after` convention (GET /invoices)."""
    customers = (
        Account.objects.filter(external_id__isnull=False)
        .select_related("subscription__plan", "subscription__pending_plan", "parent")
        .order_by("-pk")
    )
    if starting_after:
        cursor = Account.objects.filter(external_id=starting_after).values_list("pk", flat=True)
        if not cursor:
            raise CustomerError(f"No customer with external_id '{starting_after}'.")
        customers = customers.filter(pk__lt=cursor[0])
    page = list(customers[: limit + 1])
    return page[:limit], len(page) > limit
