"""The page a portal link opens (SPEC X4): sign in and go to the account, or say why not."""

from django.contrib.auth import login
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.cache import never_cache

from accounts.portal import PortalLinkUnusable, use_portal_link

# The session key of the operator's page the dashboard links back to ("Back to ...").
RETURN_URL_SESSION_KEY = "portal_return_url"


@never_cache
def portal_entry(request, token: str):
    try:
        entry = use_portal_link(token=token, now=timezone.now())
    except PortalLinkUnusable as error:
        return render(request, "accounts/portal_link.html", {"message": str(error)}, status=410)
    login(request, entry.user, backend="allauth.account.auth_backends.AuthenticationBackend")
    # After login, which starts a new session: the link back belongs to this one.
    request.session[RETURN_URL_SESSION_KEY] = entry.return_url
    return redirect("dashboard:account", public_id=entry.account.public_id)
