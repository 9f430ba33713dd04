"""A real HTTP receiver on 127.0.0.1 for webhook tests, verifying what it gets with the
`standardwebhooks` package (an independent implementation of the signature scheme)."""

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from standardwebhooks import Webhook

from webhooks.endpoints import create_endpoint


@dataclass
class Received:
    headers: dict
    body: bytes
    # The event, if a standardwebhooks verifier with one of the receiver's secrets accepted it.
    verified: dict | None
    error: str = ""

    @property
    def event_id(self) -> str:
        return json.loads(self.body)["id"]


@dataclass
class Receiver:
    """What the receiver answers (`status`, `delay_seconds`, `location`) and what it got."""

    port: int = 0
    status: int = 200
    delay_seconds: float = 0
    location: str = ""
    secrets: list[str] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                headers = {k.lower(): v for k, v in self.headers.items()}
                verified, error = None, "no secret to verify with"
                for secret in receiver.secrets:
                    try:
                        verified = Webhook(secret).verify(body, headers)
                        error = ""
                        break
                    except Exception as exc:
                        error = str(exc)
                receiver.received.append(Received(headers, body, verified, error))
                if receiver.delay_seconds:
                    time.sleep(receiver.delay_seconds)
                self.send_response(receiver.status)
                if receiver.location:
                    self.send_header("Location", receiver.location)
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                self.wfile.write(f"answered {receiver.status}".encode())

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        """Stop listening: connections to the port are refused until start() again."""
        self.server.shutdown()
        self.server.server_close()

    def event_ids(self) -> list[str]:
        return [r.event_id for r in self.received]


@pytest.fixture
def receiver():
    receiver = Receiver()
    receiver.start()
    yield receiver
    receiver.stop()


@pytest.fixture
def endpoint_to(receiver, now):
    """An endpoint to the receiver, whose secret the receiver verifies with."""

    def make(**options):
        created = create_endpoint(url=receiver.url, now=now, **options)
        receiver.secrets.append(created.secret)
        return created.endpoint

    return make
