"""What the Sentry tests make fail: a task and a view whose errors carry personal data."""

from django.http import HttpResponse
from django.urls import path

CARD = "4242 4242 4242 4242"
EMAIL = "ada@example.test"
KEY = "mlk_0123456789abcdef:s3cr3t-Key-Secret-Value-0123456789"


def failing_task(**_):
    customer_email = EMAIL  # noqa: F841 - a local that Sentry would otherwise report
    api_key = KEY  # noqa: F841
    raise ValueError(f"charge of card {CARD} for {EMAIL} with {KEY} failed")


def failing_view(request):
    customer_email = request.POST.get("email")  # noqa: F841
    raise RuntimeError(f"no plan for {request.POST.get('email')} paying with {CARD}")


def ok_view(request):
    return HttpResponse("ok")


urlpatterns = [path("fail/", failing_view), path("ok/", ok_view)]
