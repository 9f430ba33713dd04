from django.http import HttpResponse, JsonResponse
from django.views.decorators.http import require_GET

from accounts.brand import primary_color, soft_color


def healthz(request):
    """Answer load balancers without touching the database (also the benchmark's reference)."""
    return JsonResponse({"ok": True})


@require_GET
def brand_css(request):
    """Serve the brand's colours as a style sheet: a strict CSP allows no inline style."""
    color = primary_color()  # always #rrggbb: nothing else reaches the sheet
    body = f":root {{ --accent: {color}; --accent-soft: {soft_color(color)}; }}\n"
    response = HttpResponse(body, content_type="text/css; charset=utf-8")
    response["Cache-Control"] = "public, max-age=3600"
    return response
