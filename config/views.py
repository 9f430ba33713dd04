from django.http import JsonResponse


def healthz(request):
    """Answer load balancers without touching the database (also the benchmark's reference)."""
    return JsonResponse({"ok": True})
