"""`/api/v1/webhook_endpoints` with the platform key: CRUD, the secret once, 403, 400, 404."""

import pytest
from standardwebhooks import Webhook

from webhooks.models import WebhookEndpoint

pytestmark = pytest.mark.django_db
PATH = "/api/v1/webhook_endpoints"


@pytest.fixture
def platform(client, make_key):
    token = make_key().token

    def call(method, path, body=None, *, token=token):
        extra = {"HTTP_AUTHORIZATION": f"Bearer {token}"}
        if method == "get":
            return client.get(path, **extra)
        return getattr(client, method)(
            path, body if body is not None else {}, content_type="application/json", **extra
        )

    return call


def assert_error(response, status):
    assert response.status_code == status
    assert response.json()["error"]["code"] == str(status)


def test_create_read_update_list_and_delete_an_endpoint(platform, receiver):
    created = platform(
        "post", PATH, {"url": receiver.url, "description": "ours", "event_types": ["balance.low"]}
    )
    assert created.status_code == 201
    body = created.json()
    assert body["secret"].startswith("whsec_")
    Webhook(body["secret"])  # the independent library accepts the secret's format
    endpoint_id = body["id"]
    assert body["event_types"] == ["balance.low"]

    got = platform("get", f"{PATH}/{endpoint_id}").json()
    assert "secret" not in got
    assert got["url"] == receiver.url

    patched = platform("patch", f"{PATH}/{endpoint_id}", {"enabled": False, "event_types": []})
    assert patched.status_code == 200
    assert patched.json()["enabled"] is False
    assert patched.json()["event_types"] == []
    assert patched.json()["disabled_at"] is not None

    listed = platform("get", PATH).json()
    assert [e["id"] for e in listed["webhook_endpoints"]] == [endpoint_id]
    assert "secret" not in listed["webhook_endpoints"][0]

    rotated = platform("post", f"{PATH}/{endpoint_id}/rotate_secret")
    assert rotated.status_code == 200
    assert rotated.json()["secret"].startswith("whsec_")
    assert rotated.json()["secret"] != body["secret"]

    deleted = platform("delete", f"{PATH}/{endpoint_id}")
    assert deleted.json() == {"id": endpoint_id, "deleted": True}
    assert not WebhookEndpoint.objects.exists()
    assert_error(platform("get", f"{PATH}/{endpoint_id}"), 404)


def test_the_list_pages_with_starting_after(platform, receiver):
    ids = [platform("post", PATH, {"url": receiver.url}).json()["id"] for _ in range(3)]

    first = platform("get", f"{PATH}?limit=2").json()
    rest = platform("get", f"{PATH}?limit=2&starting_after={ids[1]}").json()

    assert [e["id"] for e in first["webhook_endpoints"]] == ids[:2]
    assert first["has_more"] is True
    assert [e["id"] for e in rest["webhook_endpoints"]] == ids[2:]
    assert rest["has_more"] is False


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("post", PATH),
        ("get", PATH),
        ("get", f"{PATH}/we_x"),
        ("patch", f"{PATH}/we_x"),
        ("delete", f"{PATH}/we_x"),
        ("post", f"{PATH}/we_x/rotate_secret"),
    ],
)
def test_a_customer_key_gets_403(platform, make_account, make_key, method, path):
    token = make_key(make_account()).token

    response = platform(method, path, {"url": "https://example.com/"}, token=token)

    assert_error(response, 403)
    assert not WebhookEndpoint.objects.exists()


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/hooks",
        "javascript:alert(1)",
        "http:///no-host",
        "http://127.0.0.1:8000/hooks",
        "http://localhost/hooks",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/hooks",
        "http://10.1.2.3/hooks",
        "https://user:pass@example.com/hooks",
    ],
)
def test_a_bad_or_refused_url_is_400_and_writes_nothing(platform, settings, url):
    settings.WEBHOOKS_ALLOW_PRIVATE = False

    assert_error(platform("post", PATH, {"url": url}), 400)

    assert not WebhookEndpoint.objects.exists()


def test_a_refused_url_in_a_patch_is_400_and_changes_nothing(platform, receiver, settings):
    endpoint_id = platform("post", PATH, {"url": receiver.url}).json()["id"]
    settings.WEBHOOKS_ALLOW_PRIVATE = False

    assert_error(platform("patch", f"{PATH}/{endpoint_id}", {"url": "gopher://x/"}), 400)

    assert WebhookEndpoint.objects.get().url == receiver.url


def test_an_unknown_event_type_is_400(platform, receiver):
    response = platform("post", PATH, {"url": receiver.url, "event_types": ["balance.lo"]})

    assert_error(response, 400)
    assert "balance.lo" in response.json()["error"]["message"]


def test_every_operation_is_in_the_openapi_schema_with_examples(client):
    schema = client.get("/api/v1/openapi.json").json()

    operations = schema["paths"][PATH] | schema["paths"][f"{PATH}/{{endpoint_id}}"]
    assert set(operations) == {"post", "get", "patch", "delete"}
    assert "post" in schema["paths"][f"{PATH}/{{endpoint_id}}/rotate_secret"]
    components = schema["components"]["schemas"]
    for name in ("EndpointIn", "EndpointPatch", "EndpointOut", "EndpointWithSecretOut"):
        assert components[name]["examples"], name


def test_an_unknown_cursor_is_400(platform):
    assert_error(platform("get", f"{PATH}?starting_after=we_unknown"), 400)


def test_enabled_must_be_a_json_boolean(platform, receiver):
    # Found by the fuzzer: 0 was taken for false.
    assert_error(platform("post", PATH, {"url": receiver.url, "enabled": 0}), 400)
    assert not WebhookEndpoint.objects.exists()
