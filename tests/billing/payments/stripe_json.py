"""Hand-written Stripe objects, shaped like API version 2024-12-18 answers, for unit tests.

Each builder returns the JSON Stripe would send (a dict); tests put them behind the gateway
module with `FakeStripeAPI` or inside signed webhook events.
"""

import itertools
import time

_ids = itertools.count(1000)
CREATED = 1773576000  # 2026-03-15 12:00 UTC


def stripe_id(prefix: str) -> str:
    return f"{prefix}_Test{next(_ids):08d}abcdef"


def account(account_id="acct_TestPlatform0001") -> dict:
    return {
        "id": account_id,
        "object": "account",
        "business_profile": {"name": "Meterline test", "url": None},
        "business_type": None,
        "capabilities": {},
        "charges_enabled": True,
        "country": "US",
        "created": CREATED,
        "default_currency": "usd",
        "details_submitted": True,
        "email": "platform@example.test",
        "metadata": {},
        "payouts_enabled": True,
        "settings": {
            "branding": {"icon": None, "logo": None, "primary_color": None},
            "dashboard": {"display_name": "Meterline", "timezone": "Etc/UTC"},
            "payments": {"statement_descriptor": "METERLINE"},
        },
        "type": "standard",
    }


def customer(customer_id: str, *, email="owner@example.test", metadata=None) -> dict:
    return {
        "id": customer_id,
        "object": "customer",
        "address": None,
        "balance": 0,
        "created": CREATED,
        "currency": "usd",
        "default_source": None,
        "delinquent": False,
        "description": None,
        "discount": None,
        "email": email,
        "invoice_prefix": "ABC123",
        "invoice_settings": {
            "custom_fields": None,
            "default_payment_method": None,
            "footer": None,
            "rendering_options": None,
        },
        "livemode": False,
        "metadata": metadata or {},
        "name": "Test customer",
        "phone": None,
        "preferred_locales": [],
        "shipping": None,
        "tax_exempt": "none",
    }


def payment_method(pm_id: str, *, customer_id=None, last4="4242", brand="visa") -> dict:
    return {
        "id": pm_id,
        "object": "payment_method",
        "billing_details": {
            "address": {
                "city": None,
                "country": None,
                "line1": None,
                "line2": None,
                "postal_code": None,
                "state": None,
            },
            "email": None,
            "name": None,
            "phone": None,
        },
        "card": {
            "brand": brand,
            "checks": {"address_line1_check": None, "cvc_check": "pass"},
            "country": "US",
            "exp_month": 12,
            "exp_year": 2030,
            "fingerprint": "Xt5EWLLDS7FJjR1c",
            "funding": "credit",
            "last4": last4,
            "networks": {"available": ["visa"], "preferred": None},
            "three_d_secure_usage": {"supported": True},
            "wallet": None,
        },
        "created": CREATED,
        "customer": customer_id,
        "livemode": False,
        "metadata": {},
        "type": "card",
    }


def payment_intent(
    pi_id: str,
    *,
    amount_cents: int,
    customer_id: str,
    status="succeeded",
    metadata=None,
    charge_id=None,
    payment_method_id=None,
) -> dict:
    return {
        "id": pi_id,
        "object": "payment_intent",
        "amount": amount_cents,
        "amount_capturable": 0,
        "amount_received": amount_cents if status == "succeeded" else 0,
        "application": None,
        "application_fee_amount": None,
        "canceled_at": None,
        "cancellation_reason": None,
        "capture_method": "automatic_async",
        "client_secret": f"{pi_id}_secret_abc",
        "confirmation_method": "automatic",
        "created": CREATED,
        "currency": "usd",
        "customer": customer_id,
        "description": None,
        "invoice": None,
        "last_payment_error": None
        if status != "requires_payment_method"
        else {"code": "card_declined", "message": "Your card was declined."},
        "latest_charge": charge_id,
        "livemode": False,
        "metadata": metadata or {},
        "next_action": None
        if status != "requires_action"
        else {"type": "use_stripe_sdk", "use_stripe_sdk": {}},
        "on_behalf_of": None,
        "payment_method": payment_method_id,
        "payment_method_types": ["card"],
        "receipt_email": None,
        "setup_future_usage": None,
        "shipping": None,
        "statement_descriptor": None,
        "statement_descriptor_suffix": None,
        "status": status,
        "transfer_data": None,
        "transfer_group": None,
    }


def charge(
    ch_id: str,
    *,
    amount_cents: int,
    customer_id: str,
    payment_intent_id: str,
    metadata=None,
    amount_refunded=0,
    payment_method_id=None,
) -> dict:
    return {
        "id": ch_id,
        "object": "charge",
        "amount": amount_cents,
        "amount_captured": amount_cents,
        "amount_refunded": amount_refunded,
        "application_fee_amount": None,
        "balance_transaction": None,
        "billing_details": {"address": None, "email": None, "name": None, "phone": None},
        "calculated_statement_descriptor": "METERLINE",
        "captured": True,
        "created": CREATED,
        "currency": "usd",
        "customer": customer_id,
        "description": None,
        "disputed": False,
        "failure_code": None,
        "failure_message": None,
        "fraud_details": {},
        "invoice": None,
        "livemode": False,
        "metadata": metadata or {},
        "outcome": {
            "network_status": "approved_by_network",
            "reason": None,
            "risk_level": "normal",
            "seller_message": "Payment complete.",
            "type": "authorized",
        },
        "paid": True,
        "payment_intent": payment_intent_id,
        "payment_method": payment_method_id,
        "payment_method_details": None,
        "receipt_email": None,
        "receipt_url": None,
        "refunded": amount_refunded == amount_cents,
        "shipping": None,
        "statement_descriptor": None,
        "status": "succeeded",
        "transfer_group": None,
    }


def refund(re_id: str, *, amount_cents: int, payment_intent_id: str, charge_id: str, metadata=None):
    return {
        "id": re_id,
        "object": "refund",
        "amount": amount_cents,
        "balance_transaction": None,
        "charge": charge_id,
        "created": CREATED,
        "currency": "usd",
        "metadata": metadata or {},
        "payment_intent": payment_intent_id,
        "reason": None,
        "receipt_number": None,
        "status": "succeeded",
    }


def checkout_session(
    cs_id: str,
    *,
    customer_id: str,
    amount_cents: int | None,
    mode="payment",
    payment_status="paid",
    payment_intent_id=None,
    setup_intent_id=None,
    metadata=None,
    client_reference_id=None,
    status="complete",
) -> dict:
    return {
        "id": cs_id,
        "object": "checkout.session",
        "amount_subtotal": amount_cents,
        "amount_total": amount_cents,
        "billing_address_collection": None,
        "cancel_url": "https://meterline.example.test/cancel",
        "client_reference_id": client_reference_id,
        "created": CREATED,
        "currency": "usd",
        "customer": customer_id,
        "customer_email": None,
        "expires_at": CREATED + 86400,
        "livemode": False,
        "locale": None,
        "metadata": metadata or {},
        "mode": mode,
        "payment_intent": payment_intent_id,
        "payment_method_types": ["card"],
        "payment_status": payment_status,
        "setup_intent": setup_intent_id,
        "status": status,
        "submit_type": None,
        "subscription": None,
        "success_url": "https://meterline.example.test/done",
        "total_details": {"amount_discount": 0, "amount_shipping": 0, "amount_tax": 0},
        "url": f"https://checkout.stripe.com/c/pay/{cs_id}" if status == "open" else None,
    }


def setup_intent(seti_id: str, *, customer_id: str, payment_method_id: str) -> dict:
    return {
        "id": seti_id,
        "object": "setup_intent",
        "application": None,
        "cancellation_reason": None,
        "client_secret": f"{seti_id}_secret_abc",
        "created": CREATED,
        "customer": customer_id,
        "description": None,
        "last_setup_error": None,
        "livemode": False,
        "metadata": {},
        "next_action": None,
        "on_behalf_of": None,
        "payment_method": payment_method_id,
        "payment_method_types": ["card"],
        "status": "succeeded",
        "usage": "off_session",
    }


def event(event_type: str, obj: dict, *, event_id=None, created=None) -> dict:
    return {
        "id": event_id or stripe_id("evt"),
        "object": "event",
        "api_version": "2024-12-18.acacia",
        "created": created or int(time.time()),
        "data": {"object": obj},
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": event_type,
    }
