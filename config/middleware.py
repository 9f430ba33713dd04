"""Content-Security-Policy for the site's own pages (issue: dashboard).

Every script and style is a file under /static/ (htmx and Chart.js are vendored there), so the
policy allows nothing inline and nothing from another host. Django's admin keeps a few inline
styles of its own and is staff-only, so it gets the looser default of the browser.
"""

from django.conf import settings

POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "font-src 'self'",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)


class ContentSecurityPolicyMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response
        self.exempt = tuple(getattr(settings, "CSP_EXEMPT_PATHS", ("/admin/", "/api/v1/docs")))

    def __call__(self, request):
        response = self.get_response(request)
        if not request.path.startswith(self.exempt):
            response.setdefault("Content-Security-Policy", POLICY)
        response.setdefault("Referrer-Policy", "same-origin")
        return response
