"""Run localstripe (a fake Stripe API) on 127.0.0.1 only, for the end-to-end payment tests.

`python -m tests.billing.payments.localstripe_server PORT`. Unlike localstripe's own command it
binds the loopback address only, keeps its state in memory (no pickle file in the temp folder)
and answers `GET /v1/account`, which dj-stripe asks to find the platform account.

It also keeps Stripe's idempotency promise, which localstripe itself ignores: a POST that repeats
an `Idempotency-Key` gets the first answer again instead of creating a second object. Without it,
stripe-python's own retry after a slow answer (it retries twice by default) made a second refund
on a loaded machine, which real Stripe never does.
"""

import asyncio
import sys

from aiohttp import web
from localstripe import resources, server


def idempotency_middleware():
    answers: dict[tuple[str, str, str], asyncio.Future] = {}

    @web.middleware
    async def replay(request, handler):
        key = request.headers.get("Idempotency-Key")
        if request.method != "POST" or not key:
            return await handler(request)
        slot = (request.headers.get("Authorization", ""), request.path, key)
        if slot in answers:
            # A retry while the first request still runs waits for its answer.
            status, body, content_type = await asyncio.shield(answers[slot])
            return web.Response(
                status=status,
                body=body,
                content_type=content_type,
                headers={"Idempotent-Replayed": "true"},
            )
        answer = asyncio.get_running_loop().create_future()
        answers[slot] = answer
        try:
            response = await handler(request)
        except BaseException as error:
            del answers[slot]  # nothing was answered: a retry runs the request again
            answer.set_exception(error)
            answer.exception()  # retrieved here, so no waiter is needed
            raise
        answer.set_result((response.status, response.body, response.content_type))
        return response

    return replay


def main(port: int) -> None:
    resources.Store.dump_to_disk = lambda self: None
    resources.Store.try_load_from_disk = lambda self: None

    async def account(request):
        return web.json_response(
            {
                "id": "acct_LocalstripePlatform",
                "object": "account",
                "business_profile": {"name": "Meterline e2e"},
                "charges_enabled": True,
                "country": "US",
                "created": 1773576000,
                "default_currency": "usd",
                "details_submitted": True,
                "email": "platform@example.test",
                "metadata": {},
                "payouts_enabled": True,
                "settings": {"dashboard": {"display_name": "Meterline", "timezone": "Etc/UTC"}},
                "type": "standard",
            }
        )

    server.app.router.add_get("/v1/account", account)
    # Outermost, so that error answers are replayed too, as Stripe does.
    server.app.middlewares.insert(0, idempotency_middleware())
    web.run_app(server.app, host="127.0.0.1", port=port, print=None, access_log=None)


if __name__ == "__main__":
    main(int(sys.argv[1]))
