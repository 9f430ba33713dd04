"""The site's own middleware: security headers, and browser middleware kept off the JSON API.

Content-Security-Policy: every script and style is a file under /static/
(htmx and Chart.js are vendored there), so the policy allows nothing inline and nothing from
another host. Django's admin keeps a few inline styles of its own and is staff-only, so it gets
the looser default of the browser.

Browser middleware: the JSON API under /api/ authenticates every request by its API key and
never reads a session, a logged-in user, a flash message or htmx headers, so the middleware
that prepares those skips it (about a tenth of an authorize request's CPU). Security headers
(SecurityMiddleware, X-Frame-Options, the policy below) and CSRF checks still apply to it.
"""

from django.conf import settings
from django.contrib.auth.middleware import AuthenticationMiddleware
from django.contrib.messages.middleware import MessageMiddleware
from django.contrib.sessions.middleware import SessionMiddleware
from django_htmx.middleware import HtmxMiddleware

API_PATH_PREFIX = "/api/"

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


class _BrowserOnly:
    """Mixin: pass requests to the JSON API straight on, untouched."""

    def __call__(self, request):
        if request.path_info.startswith(API_PATH_PREFIX):
            return self.get_response(request)
        return super().__call__(request)


# Subclasses, so that Django's and the admin's checks still find the middleware they require.
class BrowserSessionMiddleware(_BrowserOnly, SessionMiddleware):
    pass


class BrowserAuthenticationMiddleware(_BrowserOnly, AuthenticationMiddleware):
    pass


class BrowserMessageMiddleware(_BrowserOnly, MessageMiddleware):
    pass


class BrowserHtmxMiddleware(_BrowserOnly, HtmxMiddleware):
    pass
