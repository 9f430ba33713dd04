"""The Team page: members, roles and invitations (SPEC A2, D4).

Anyone on the account sees who is on it; owners and admins (`Action.MANAGE_MEMBERS`) invite,
change roles and remove members. Members and invitations are looked up by the account and their
id, so another account's are a 404 like unknown ones.
"""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from accounts import team
from accounts.permissions import Action
from accounts.web.forms import InviteForm, RoleForm
from accounts.web.shell import account_page

# The invitation link waits in the session between the POST and the page it redirects to, which
# takes it out: a reload neither shows it again nor sends a second invitation (post/redirect/get).
INVITE_LINK_SESSION = "invite_link:{}"


def _team_page(request, account, *, form=None, status: int = 200):
    invite_link = request.session.pop(INVITE_LINK_SESSION.format(account.public_id), "")
    response = render(
        request,
        "accounts/team.html",
        {
            **team.team_for(account=account, now=timezone.now()),
            "form": form or InviteForm(),
            "invite_link": invite_link,
        },
        status=status,
    )
    if invite_link:
        response["Cache-Control"] = "private, no-store"
    return response


@account_page(Action.VIEW)
def team_page(request, account):
    return _team_page(request, account)


@account_page(Action.MANAGE_MEMBERS)
@require_POST
def invite(request, account):
    form = InviteForm(request.POST)
    if form.is_valid():
        try:
            issued = team.invite_member(
                account=account,
                email=form.cleaned_data["email"],
                role=form.cleaned_data["role"],
                invited_by=request.user,
                actor_role=request.role,
                now=timezone.now(),
            )
        except team.TeamError as error:
            form.add_error(None, str(error))
        else:
            messages.success(request, f"Invitation sent to {issued.invitation.email}.")
            request.session[INVITE_LINK_SESSION.format(account.public_id)] = team.invitation_url(
                issued.token
            )
            return redirect("dashboard:team", public_id=account.public_id)
    return _team_page(request, account, form=form, status=400)


@account_page(Action.MANAGE_MEMBERS)
@require_POST
def revoke_invitation(request, account, invitation_id):
    try:
        team.revoke_invitation(account=account, invitation_id=invitation_id, now=timezone.now())
    except team.TeamError as error:
        messages.error(request, str(error))
    else:
        messages.success(request, "Invitation withdrawn.")
    return redirect("dashboard:team", public_id=account.public_id)


@account_page(Action.MANAGE_MEMBERS)
@require_POST
def change_role(request, account, membership_id):
    form = RoleForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose one of the roles.")
    else:
        try:
            membership = team.change_role(
                account=account,
                membership_id=membership_id,
                role=form.cleaned_data["role"],
                actor_role=request.role,
            )
        except team.TeamError as error:
            messages.error(request, str(error))
        else:
            messages.success(
                request, f"{membership.user.email} is now {membership.get_role_display()}."
            )
    return redirect("dashboard:team", public_id=account.public_id)


@account_page(Action.MANAGE_MEMBERS)
@require_POST
def remove_member(request, account, membership_id):
    try:
        team.remove_member(account=account, membership_id=membership_id, actor_role=request.role)
    except team.TeamError as error:
        messages.error(request, str(error))
    else:
        messages.success(request, "Member removed.")
    return redirect("dashboard:team", public_id=account.public_id)


@login_required
def accept_invitation(request, token):
    """The link in the invitation email: show it, and accept it with a POST."""
    invitation = team.invitation_for_token(token)
    if request.method == "POST":
        try:
            membership = team.accept_invitation(token=token, user=request.user, now=timezone.now())
        except team.TeamError as error:
            messages.error(request, str(error))
        else:
            messages.success(request, f"Welcome to {membership.account.name}.")
            return redirect("dashboard:account", public_id=membership.account.public_id)
    return render(
        request,
        "accounts/invitation.html",
        {"invitation": invitation, "now": timezone.now()},
        status=200 if invitation else 404,
    )
