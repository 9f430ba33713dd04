"""A fake Stripe API behind stripe-python's HTTP client: hand-written JSON, no network.

Installed as `stripe.default_http_client`, it answers every request stripe-python makes, ours
(billing.payments.gateway.stripe) and dj-stripe's (syncing objects while processing webhooks): GETs
from the objects the test stored, POSTs for the few creations the gateway makes. It keeps Stripe's
idempotency (a repeated key gets the first answer) and records every request.
"""

import json
from urllib.parse import parse_qsl, urlsplit

import stripe

from tests.billing.payments import stripe_json


class FakeStripeAPI(stripe.HTTPClient):
    name = "fake"

    def __init__(self):
        super().__init__()
        self.objects: dict[str, dict] = {}
        self.requests: list[tuple[str, str, dict, str | None]] = []
        self.card_answers: dict[str, str] = {}  # pm id -> succeed | decline | authenticate
        # The status a new refund is created in: Stripe finishes some card refunds later.
        self.refund_status = "succeeded"
        self._idempotent: dict[str, tuple[str, int, dict]] = {}
        self.add(stripe_json.account())

    def add(self, *objects: dict) -> None:
        for obj in objects:
            self.objects[obj["id"]] = obj

    def posts(self, path_prefix: str) -> list[dict]:
        """The parameters of every POST whose path starts with `path_prefix`, keyed ones once."""
        return [
            p for m, path, p, _ in self.requests if m == "post" and path.startswith(path_prefix)
        ]

    # stripe.HTTPClient -----------------------------------------------------------------------
    def request(self, method, url, headers, post_data=None, *, _usage=None):
        path = urlsplit(url).path
        params = dict(parse_qsl(post_data or "", keep_blank_values=True))
        key = (headers or {}).get("Idempotency-Key")
        self.requests.append((method, path, params, key))
        if method == "post" and key:
            if key in self._idempotent:
                return self._idempotent[key]
            answer = self._answer(method, path, params)
            self._idempotent[key] = answer
            return answer
        return self._answer(method, path, params)

    def close(self):
        pass

    # ------------------------------------------------------------------------------------------
    def _answer(self, method, path, params):
        try:
            status, body = self._route(method, path, params)
        except LookupError:
            status, body = 404, _error("resource_missing", f"No such object: '{path}'")
        return json.dumps(body), status, {"Request-Id": "req_fake"}

    def _route(self, method, path, params):
        parts = path.strip("/").split("/")[1:]  # drop "v1"
        if method == "get":
            if parts == ["account"]:
                return 200, self.objects["acct_TestPlatform0001"]
            return 200, self.objects[parts[-1]]
        if parts == ["customers"]:
            obj = stripe_json.customer(
                stripe_json.stripe_id("cus"),
                email=params.get("email", ""),
                metadata=_nested(params, "metadata"),
            )
            self.add(obj)
            return 200, obj
        if parts[0] == "customers" and len(parts) == 2:
            obj = self.objects[parts[1]]
            default = params.get("invoice_settings[default_payment_method]")
            if default:
                obj["invoice_settings"]["default_payment_method"] = default
            return 200, obj
        if parts == ["checkout", "sessions"]:
            amount = params.get("line_items[0][price_data][unit_amount]")
            obj = stripe_json.checkout_session(
                stripe_json.stripe_id("cs_test"),
                customer_id=params.get("customer"),
                amount_cents=int(amount) if amount else None,
                mode=params["mode"],
                payment_status="unpaid",
                metadata=_nested(params, "metadata"),
                client_reference_id=params.get("client_reference_id"),
                status="open",
            )
            self.add(obj)
            return 200, obj
        if parts == ["payment_intents"]:
            return self._create_payment_intent(params)
        if parts[0] == "payment_intents" and parts[-1] == "cancel":
            obj = self.objects[parts[1]]
            obj["status"] = "canceled"
            return 200, obj
        if parts == ["refunds"]:
            intent = self.objects[params["payment_intent"]]
            obj = stripe_json.refund(
                stripe_json.stripe_id("re"),
                amount_cents=int(params.get("amount", intent["amount"])),
                payment_intent_id=intent["id"],
                charge_id=intent["latest_charge"],
                metadata=_nested(params, "metadata"),
            )
            obj["status"] = self.refund_status
            self.add(obj)
            return 200, obj
        if parts[0] == "payment_methods" and parts[-1] == "detach":
            obj = self.objects[parts[1]]
            obj["customer"] = None
            return 200, obj
        if parts[0] == "payment_methods" and parts[-1] == "attach":
            obj = self.objects[parts[1]]
            obj["customer"] = params["customer"]
            return 200, obj
        raise LookupError(path)

    def _create_payment_intent(self, params):
        pm_id = params.get("payment_method")
        answer = self.card_answers.get(pm_id, "succeed")
        pi_id = stripe_json.stripe_id("pi")
        amount = int(params["amount"])
        if amount < 50:
            # Stripe's own answer to a charge under its 0.50 USD minimum.
            return 400, _error("amount_too_small", "Amount must be at least $0.50 usd")
        metadata = _nested(params, "metadata")
        if answer == "succeed":
            charge = stripe_json.charge(
                stripe_json.stripe_id("ch"),
                amount_cents=amount,
                customer_id=params.get("customer"),
                payment_intent_id=pi_id,
                metadata=metadata,
            )
            self.add(charge)
            obj = stripe_json.payment_intent(
                pi_id,
                amount_cents=amount,
                customer_id=params.get("customer"),
                metadata=metadata,
                charge_id=charge["id"],
                payment_method_id=pm_id,
            )
            self.add(obj)
            return 200, obj
        status = "requires_payment_method"
        obj = stripe_json.payment_intent(
            pi_id,
            amount_cents=amount,
            customer_id=params.get("customer"),
            status=status,
            metadata=metadata,
            payment_method_id=pm_id,
        )
        self.add(obj)
        code = "authentication_required" if answer == "authenticate" else "card_declined"
        message = (
            "This payment requires authentication."
            if answer == "authenticate"
            else "Your card was declined."
        )
        error = _error(code, message, error_type="card_error")
        error["error"]["payment_intent"] = obj
        return 402, error


def _nested(params: dict, name: str) -> dict:
    prefix = f"{name}["
    return {k[len(prefix) : -1]: v for k, v in params.items() if k.startswith(prefix)}


def _error(code, message, *, error_type="invalid_request_error"):
    return {"error": {"code": code, "message": message, "type": error_type}}
