"""The demo's webhook receiver: a tiny HTTP server on 127.0.0.1 that prints each webhook it
gets and whether its Standard Webhooks signature verifies, and the endpoint that points at it.

So a newcomer sees a delivery within a minute of `manage.py demo`: open an account, refund a
call, or let a balance run low, and the event appears in the console.
"""

import hmac
import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from django.utils import timezone

from webhooks.delivery import signing_secrets
from webhooks.endpoints import create_endpoint, update_endpoint
from webhooks.models import WebhookEndpoint
from webhooks.signing import signature

DESCRIPTION = "Demo receiver (manage.py demo)"
# What a receiver accepts as the sender's clock, as the Standard Webhooks libraries do.
TOLERANCE_SECONDS = 300


def demo_endpoint(*, url: str) -> WebhookEndpoint:
    """Point the demo's endpoint (made on the first start) at this start's receiver."""
    now = timezone.now()
    endpoint = WebhookEndpoint.objects.filter(description=DESCRIPTION).first()
    if endpoint is None:
        return create_endpoint(url=url, description=DESCRIPTION, now=now).endpoint
    return update_endpoint(endpoint=endpoint, changes={"url": url, "enabled": True}, now=now)


def verified(*, secrets: list[str], headers, body: bytes) -> bool:
    """Whether one of the signatures in the headers is one of these secrets' (and is recent)."""
    msg_id = headers.get("webhook-id", "")
    timestamp = headers.get("webhook-timestamp", "")
    if not timestamp.isdigit() or abs(time.time() - int(timestamp)) > TOLERANCE_SECONDS:
        return False
    sent = headers.get("webhook-signature", "").split(" ")
    for secret in secrets:
        expected = signature(secret=secret, msg_id=msg_id, timestamp=int(timestamp), body=body)
        if any(hmac.compare_digest(expected, s) for s in sent):
            return True
    return False


def start_receiver(*, write: Callable[[str], None]) -> str:
    """Start the receiver in a thread, point the demo endpoint at it; return its URL."""
    state = {}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            ok = verified(secrets=state["secrets"], headers=self.headers, body=body)
            try:
                event = json.loads(body)
            except ValueError:
                event = {}
            write(
                f"webhook {event.get('type', '?')} {event.get('id', '?')} for "
                f"{event.get('data', {}).get('account', '?')}: signature "
                f"{'verified' if ok else 'NOT VERIFIED'}"
            )
            self.send_response(204 if ok else 400)
            self.end_headers()

        def log_message(self, *args):
            pass  # the line above says it all

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    url = f"http://127.0.0.1:{server.server_address[1]}/webhooks"
    # The receiver holds its secrets, as the platform's would (a rotation needs a restart).
    state["secrets"] = signing_secrets(demo_endpoint(url=url), now=timezone.now())
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return url
