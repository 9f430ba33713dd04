from django.urls import path

from accounts.web import team_views, views

app_name = "dashboard"

urlpatterns = [
    path("", views.home, name="home"),
    path("switch/", views.switch_account, name="switch"),
    path("invitations/<public_id:token>/", team_views.accept_invitation, name="invitation"),
    path("a/<public_id:public_id>/", views.account_detail, name="account"),
    path("a/<public_id:public_id>/keys/", views.api_keys, name="keys"),
    path("a/<public_id:public_id>/keys/new/", views.create_key, name="keys_create"),
    path("a/<public_id:public_id>/keys/tier/", views.request_tier, name="keys_tier"),
    path(
        "a/<public_id:public_id>/keys/<public_id:key_id>/revoke/",
        views.revoke_key,
        name="keys_revoke",
    ),
    path("a/<public_id:public_id>/team/", team_views.team_page, name="team"),
    path("a/<public_id:public_id>/team/invite/", team_views.invite, name="team_invite"),
    path(
        "a/<public_id:public_id>/team/invitations/<int:invitation_id>/withdraw/",
        team_views.revoke_invitation,
        name="team_withdraw",
    ),
    path(
        "a/<public_id:public_id>/team/<int:membership_id>/role/",
        team_views.change_role,
        name="team_role",
    ),
    path(
        "a/<public_id:public_id>/team/<int:membership_id>/remove/",
        team_views.remove_member,
        name="team_remove",
    ),
    path("a/<public_id:public_id>/subaccounts/", views.subaccounts, name="subaccounts"),
    path(
        "a/<public_id:public_id>/subaccounts/new/",
        views.create_subaccount_view,
        name="subaccounts_create",
    ),
]
