"""`/api/v1/customers`: the operator's customers by their own ids, with the platform key (SPEC X1,
X4; issue 15).

A django-ninja router mounted on the API of `usage.api.app`, which brings the error shape and
idempotency. The platform opens, reads, changes and lists customers by `external_id`, and acts
for one of them as its customer key would (authorize, balance, usage, invoices) without holding
that key; it grants credit and makes one-time dashboard links. Customer keys get 403 on all of
it. This module must not import `usage.api.app`, which imports it to mount it.
"""

from datetime import datetime
from typing import Annotated, Literal

from django.http import HttpRequest
from django.utils import timezone
from ninja import Path, Query, Router
from pydantic import BaseModel, Field

from accounts.models import Account, Role
from accounts.portal import PortalLinkError, create_portal_link
from billing import customers as service
from billing.money import micros_to_api, usd_to_micros
from usage import selectors
from usage.api.answers import authorization_json, json_response
from usage.api.auth import platform_key
from usage.api.errors import ApiError
from usage.api.invoices import MAX_LIMIT, InvoicesOut, invoices_page
from usage.api.schemas import (
    PRINTABLE,
    AuthorizeIn,
    AuthorizeOut,
    BalanceOut,
    CreditAmount,
    ErrorOut,
    ExternalId,
    Moment,
    Money,
    Strict,
    UsageOut,
)
from usage.reads.keys import LoadedKey, load_customer
from usage.spending import authorize as gateway

router = Router(tags=["customers"])

PLATFORM_ERRORS = frozenset({400, 401, 403, 404, 500})
MAX_METADATA_KEYS = 50

MetadataKey = Annotated[str, Field(min_length=1, max_length=40, pattern=PRINTABLE)]
MetadataValue = Annotated[str, Field(max_length=500, pattern=PRINTABLE, strict=True)]
Metadata = Annotated[
    dict[MetadataKey, MetadataValue],
    Field(
        max_length=MAX_METADATA_KEYS,
        description=(
            f"The operator's own notes: at most {MAX_METADATA_KEYS} keys of up to 40 characters, "
            "each with a string of up to 500."
        ),
    ),
]
Email = Annotated[str, Field(min_length=3, max_length=254, pattern=PRINTABLE, strict=True)]
Emails = Annotated[
    Email | list[Email],
    Field(description="Billing contacts: one address or a list of up to 10; the first is primary."),
]
Name = Annotated[str, Field(min_length=1, max_length=200, pattern=PRINTABLE, strict=True)]
PlanCode = Annotated[str, Field(min_length=1, max_length=50, pattern=PRINTABLE, strict=True)]

EXAMPLE_CUSTOMER = {
    "id": "acc_3kT9x2mQ7vLp",
    "external_id": "workspace_42",
    "name": "Acme Voice Ltd",
    "email": ["billing@acme.example"],
    "metadata": {"crm_id": "0015g00000XyZ"},
    "parent": None,
    "plan": "voice-prepaid",
    "pending_plan": None,
    "billing_mode": "prepaid",
    "balance": "25.000000",
    "period_start": "2026-03-15T00:00:00+00:00",
    "period_end": "2026-04-15T00:00:00+00:00",
    "created_at": "2026-03-15T12:00:00Z",
}


class CustomerIn(Strict):
    external_id: ExternalId = Field(
        description="Your own id of the customer: unique, at most 255 printable characters, "
        "no '/'. Never reused for another customer."
    )
    name: Name
    email: Emails
    plan: PlanCode = Field(description="The plan's code, e.g. voice-prepaid.")
    parent: ExternalId | None = Field(
        None, description="The external_id of the parent customer: this one is a subaccount."
    )
    metadata: Metadata = {}
    credit: CreditAmount | None = Field(
        None, description='Promotional credit to start with, USD, e.g. "25.00". No signup credit.'
    )


class CustomerPatch(Strict):
    name: Name | None = None
    email: Emails | None = None
    metadata: Metadata | None = Field(None, description="Replaces the whole map.")
    plan: PlanCode | None = Field(None, description="Move to this plan (SPEC S2).")
    effective: Literal["now", "next_period"] = Field(
        "now",
        description="now: new usage is rated on the new plan at once; next_period: the change "
        "applies when the current period closes.",
    )


class CustomerOut(BaseModel):
    id: str = Field(description="Meterline's id of the account (acc_...).")
    external_id: str
    name: str
    email: list[str]
    metadata: dict[str, str]
    parent: str | None = Field(description="The parent customer's external_id, if any.")
    plan: str
    pending_plan: str | None = Field(description="The plan from the next period, if changing.")
    billing_mode: Literal["prepaid", "postpaid"]
    balance: Money
    period_start: datetime
    period_end: datetime = Field(description="Exclusive: the period is [start, end).")
    created_at: datetime


class CustomersOut(BaseModel):
    customers: list[CustomerOut]
    has_more: bool = Field(description="More, older ones follow: ask with starting_after.")


class CreditGrantIn(Strict):
    amount: CreditAmount
    expires_at: Moment | None = Field(None, description="When unspent credit expires.")
    priority: int = Field(
        0,
        ge=0,
        le=100,
        strict=True,
        description="Higher is spent first among grants expiring at the same time.",
    )
    reason: Annotated[str, Field(min_length=1, max_length=500, pattern=PRINTABLE, strict=True)] = (
        Field(description="Shown to the customer on their statement; kept in the audit trail.")
    )


class CreditGrantOut(BaseModel):
    account: str
    customer: str
    amount: Money
    expires_at: datetime | None
    priority: int
    reason: str
    balance: Money = Field(description="The balance after the grant.")


class PortalSessionIn(Strict):
    email: Email = Field(description="The person to sign in; made a user (verified) if new.")
    role: Role = Field(Role.BILLING, description="Their role if they are not a member yet.")
    return_url: Annotated[str, Field(max_length=2000, pattern=PRINTABLE)] = Field(
        "", description="Your page the dashboard links back to (http or https)."
    )


class PortalSessionOut(BaseModel):
    url: str = Field(description="Open it within 5 minutes; it works once.")
    expires_at: datetime


def _external_id():
    return Path(..., min_length=1, max_length=255, pattern=PRINTABLE, description="external_id")


def _examples(request: dict | None, response: dict, status: int = 200) -> dict:
    """OpenAPI extras: a request example and a response example."""
    extra = {
        "responses": {
            status: {"content": {"application/json": {"example": response}}},
            404: {
                "content": {
                    "application/json": {
                        "example": {
                            "error": {
                                "message": "No customer with external_id 'workspace_42'.",
                                "type": "not_found",
                                "code": "404",
                                "request_id": "4f1c2a9e0b7d4c61a3e8d2b5f6a70c19",
                            }
                        }
                    }
                }
            },
        }
    }
    if request is not None:
        extra["requestBody"] = {"content": {"application/json": {"example": request}}}
    return extra


def customer_json(account: Account) -> dict:
    subscription = account.subscription
    return {
        "id": account.public_id,
        "external_id": account.external_id,
        "name": account.name,
        "email": account.billing_emails,
        "metadata": account.metadata,
        "parent": account.parent.external_id if account.parent_id else None,
        "plan": subscription.plan.code,
        "pending_plan": subscription.pending_plan.code if subscription.pending_plan_id else None,
        "billing_mode": account.billing_mode,
        "balance": micros_to_api(account.balance_micros),
        "period_start": subscription.current_period_start,
        "period_end": subscription.current_period_end,
        "created_at": account.created_at,
    }


def _service_error(exc: service.CustomerError) -> ApiError:
    return ApiError(exc.status, str(exc))


def _acting_for(request: HttpRequest, external_id: str) -> LoadedKey:
    """The customer the platform key acts for, read as the customer key's query reads it."""
    loaded = load_customer(platform_key=request.auth, external_id=external_id)
    if loaded is None:
        raise ApiError(404, f"No customer with external_id '{external_id}'.")
    return loaded


def _customer(external_id: str) -> Account:
    try:
        return service.customer_by_external_id(external_id)
    except service.CustomerError as exc:
        raise _service_error(exc) from None


def _emails(value: str | list[str] | None) -> list[str] | None:
    return [value] if isinstance(value, str) else value


@router.post(
    "/customers",
    auth=platform_key,
    operation_id="create_customer",
    response={201: CustomerOut, PLATFORM_ERRORS | {409}: ErrorOut},
    summary="Create a customer",
    openapi_extra=_examples(
        {
            "external_id": "workspace_42",
            "name": "Acme Voice Ltd",
            "email": ["billing@acme.example"],
            "plan": "voice-prepaid",
            "metadata": {"crm_id": "0015g00000XyZ"},
            "credit": "25.00",
        },
        EXAMPLE_CUSTOMER,
        201,
    ),
)
def create_customer(request: HttpRequest, payload: CustomerIn):
    """Open an account for your customer `external_id` on a plan (no signup credit).

    The same external_id again answers 409 naming the existing customer.
    """
    try:
        account = service.open_customer(
            external_id=payload.external_id,
            name=payload.name,
            emails=_emails(payload.email),
            plan_code=payload.plan,
            parent_external_id=payload.parent or "",
            metadata=payload.metadata,
            credit_micros=usd_to_micros(payload.credit) if payload.credit is not None else 0,
            now=timezone.now(),
        )
    except service.CustomerError as exc:
        raise _service_error(exc) from None
    return json_response(customer_json(_customer(account.external_id)), status=201)


@router.get(
    "/customers",
    auth=platform_key,
    operation_id="list_customers",
    response={200: CustomersOut, PLATFORM_ERRORS: ErrorOut},
    summary="List customers",
    openapi_extra=_examples(None, {"customers": [EXAMPLE_CUSTOMER], "has_more": False}),
)
def list_customers(
    request: HttpRequest,
    limit: int = Query(20, ge=1, le=MAX_LIMIT, description="How many, 1 to 100."),
    starting_after: str = Query(
        "",
        max_length=255,
        pattern=PRINTABLE,
        description="The external_id of the last customer of the previous page.",
    ),
):
    """The customers that have an external_id, newest first."""
    try:
        page, has_more = service.customers_page(limit=limit, starting_after=starting_after)
    except service.CustomerError as exc:
        raise _service_error(exc) from None
    return json_response({"customers": [customer_json(a) for a in page], "has_more": has_more})


@router.get(
    "/customers/{external_id}",
    auth=platform_key,
    operation_id="get_customer",
    response={200: CustomerOut, PLATFORM_ERRORS: ErrorOut},
    summary="Get a customer",
    openapi_extra=_examples(None, EXAMPLE_CUSTOMER),
)
def get_customer(request: HttpRequest, external_id: str = _external_id()):
    return json_response(customer_json(_customer(external_id)))


@router.patch(
    "/customers/{external_id}",
    auth=platform_key,
    operation_id="update_customer",
    response={200: CustomerOut, PLATFORM_ERRORS: ErrorOut},
    summary="Update a customer",
    openapi_extra=_examples(
        {"plan": "voice-pro", "effective": "next_period"},
        {**EXAMPLE_CUSTOMER, "pending_plan": "voice-pro"},
    ),
)
def update_customer(
    request: HttpRequest, payload: CustomerPatch, external_id: str = _external_id()
):
    """Change the name, billing emails, metadata or plan; what is not sent stays."""
    try:
        account = service.update_customer(
            account=_customer(external_id),
            api_key=request.auth.api_key,
            now=timezone.now(),
            name=payload.name,
            emails=_emails(payload.email),
            metadata=payload.metadata,
            plan_code=payload.plan or "",
            effective=payload.effective,
        )
    except service.CustomerError as exc:
        raise _service_error(exc) from None
    return json_response(customer_json(account))


@router.post(
    "/customers/{external_id}/authorize",
    auth=platform_key,
    operation_id="authorize_customer",
    response={200: AuthorizeOut, PLATFORM_ERRORS | {402}: ErrorOut},
    summary="Authorize for a customer",
    openapi_extra=_examples(
        {"feature": "call", "model": "gpt-4o", "call_id": "call_8812"},
        {
            "allowed": True,
            "balance": "25.000000",
            "max_seconds": 18000,
            "reservation_id": "res_7Hq2",
            "billable": True,
        },
    ),
)
def authorize_customer(
    request: HttpRequest, payload: AuthorizeIn, external_id: str = _external_id()
):
    """The customer-key `authorize` (G1, G3), asked by the platform for its customer: the same
    body and answers (402 when billable usage is paused), without the customer's rate limit."""
    answer = gateway.authorize(
        key=_acting_for(request, external_id),
        feature=payload.feature,
        model=payload.model,
        provider=payload.provider,
        start_within=payload.start_within,
        call_id=payload.call_id,
        direction=payload.direction.value,
        destination=payload.destination,
        now=timezone.now(),
    )
    return json_response(authorization_json(answer))


@router.get(
    "/customers/{external_id}/balance",
    auth=platform_key,
    operation_id="customer_balance",
    response={200: BalanceOut, PLATFORM_ERRORS: ErrorOut},
    summary="A customer's balance",
    openapi_extra=_examples(
        None,
        {
            "account": "acc_3kT9x2mQ7vLp",
            "customer": "workspace_42",
            "balance": "25.000000",
            "held": "0.400000",
            "available": "24.600000",
            "currency": "USD",
            "billing_mode": "prepaid",
        },
    ),
)
def customer_balance(request: HttpRequest, external_id: str = _external_id()):
    """The customer-key `GET /balance`, for the customer."""
    key = _acting_for(request, external_id)
    return json_response(selectors.balance_summary(key=key, now=timezone.now()))


@router.get(
    "/customers/{external_id}/usage",
    auth=platform_key,
    operation_id="customer_usage",
    response={200: UsageOut, PLATFORM_ERRORS: ErrorOut},
    summary="A customer's usage this period",
    openapi_extra=_examples(
        None,
        {
            "account": "acc_3kT9x2mQ7vLp",
            "customer": "workspace_42",
            "period_start": "2026-03-15T00:00:00+00:00",
            "period_end": "2026-04-15T00:00:00+00:00",
            "minutes": "1.38",
            "calls": 1,
            "sms": 0,
            "chat_messages": 0,
            "input_tokens": 0,
            "output_tokens": 0,
            "cost": "0.110667",
            "allowance_minutes": "0.00",
            "allowance_used_minutes": "0.00",
            "allowance_remaining_minutes": "0.00",
            "included_credit": "0.000000",
            "included_credit_used": "0.000000",
            "included_credit_remaining": "0.000000",
            "balance": "24.889333",
        },
    ),
)
def customer_usage(request: HttpRequest, external_id: str = _external_id()):
    """The customer-key `GET /usage`, for the customer."""
    account = _acting_for(request, external_id).account
    return json_response(selectors.usage_summary(account=account, now=timezone.now()))


@router.get(
    "/customers/{external_id}/invoices",
    auth=platform_key,
    operation_id="customer_invoices",
    response={200: InvoicesOut, PLATFORM_ERRORS: ErrorOut},
    summary="A customer's invoices",
    openapi_extra=_examples(None, {"invoices": [], "has_more": False}),
)
def customer_invoices(
    request: HttpRequest,
    external_id: str = _external_id(),
    limit: int = Query(20, ge=1, le=MAX_LIMIT, description="How many, 1 to 100."),
    starting_after: str = Query(
        "",
        max_length=20,
        pattern=PRINTABLE,
        description="The number of the last invoice of the previous page.",
    ),
):
    """The customer-key `GET /invoices`, for the customer."""
    account = _acting_for(request, external_id).account
    return json_response(invoices_page(account=account, limit=limit, starting_after=starting_after))


@router.post(
    "/customers/{external_id}/credit_grants",
    auth=platform_key,
    operation_id="grant_credit",
    response={201: CreditGrantOut, PLATFORM_ERRORS: ErrorOut},
    summary="Grant credit to a customer",
    openapi_extra=_examples(
        {"amount": "10.00", "reason": "Welcome offer", "expires_at": "2026-06-30T00:00:00Z"},
        {
            "account": "acc_3kT9x2mQ7vLp",
            "customer": "workspace_42",
            "amount": "10.000000",
            "expires_at": "2026-06-30T00:00:00Z",
            "priority": 0,
            "reason": "Welcome offer",
            "balance": "35.000000",
        },
        201,
    ),
)
def grant_credit(request: HttpRequest, payload: CreditGrantIn, external_id: str = _external_id()):
    """Grant promotional credit with its ledger entry, audited as done by this platform key."""
    account = _customer(external_id)
    amount_micros = usd_to_micros(payload.amount)
    try:
        outcome = service.grant_customer_credit(
            account=account,
            amount_micros=amount_micros,
            reason=payload.reason,
            api_key=request.auth.api_key,
            now=timezone.now(),
            expires_at=payload.expires_at,
            priority=payload.priority,
        )
    except service.CustomerError as exc:
        raise _service_error(exc) from None
    return json_response(
        {
            "account": account.public_id,
            "customer": account.external_id,
            "amount": micros_to_api(amount_micros),
            "expires_at": payload.expires_at,
            "priority": payload.priority,
            "reason": payload.reason,
            "balance": micros_to_api(outcome.record.after["balance_micros"]),
        },
        status=201,
    )


@router.post(
    "/customers/{external_id}/portal_sessions",
    auth=platform_key,
    operation_id="create_portal_session",
    response={201: PortalSessionOut, PLATFORM_ERRORS: ErrorOut},
    summary="Make a one-time dashboard link",
    openapi_extra=_examples(
        {"email": "ana@acme.example", "role": "billing", "return_url": "https://app.example/"},
        {"url": "https://billing.example/portal/4dT...Qw/", "expires_at": "2026-03-15T12:05:00Z"},
        201,
    ),
)
def create_portal_session(
    request: HttpRequest, payload: PortalSessionIn, external_id: str = _external_id()
):
    """A link that signs `email` into this customer's dashboard: valid 5 minutes, once."""
    try:
        link = create_portal_link(
            account=_customer(external_id),
            email=payload.email,
            role=payload.role.value,
            return_url=payload.return_url,
            now=timezone.now(),
        )
    except PortalLinkError as exc:
        raise ApiError(400, str(exc)) from None
    return json_response({"url": link.url, "expires_at": link.expires_at}, status=201)
