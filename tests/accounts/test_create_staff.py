"""`manage.py create_staff --email E --role support|finance|admin`: staff roles as groups with
permissions (issue 16, item 9). Support gets 403 on finance actions."""

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from accounts.models import User
from accounts.staff_roles import ROLES
from tests.billing.staff_data import USD, paid_topup
from tests.conftest import NOW


def staff(email: str) -> User:
    return User.objects.get(email=email)  # read afresh: permissions are cached on instances


@pytest.mark.parametrize(
    ("role", "may", "may_not"),
    [
        ("support", ["billing.credit_back", "usage.view_call"], ["billing.refund_topup"]),
        ("finance", ["billing.refund_topup", "billing.approve_refund"], ["billing.add_plan"]),
        ("admin", ["billing.add_plan", "accounts.change_user", "billing.approve_refund"], []),
    ],
)
def test_create_staff_makes_a_staff_member_with_the_roles_permissions(role, may, may_not, db):
    call_command("create_staff", email="Agent@Operator.example", role=role, password="pw-12345!")

    user = staff("agent@operator.example")
    assert user.is_staff and not user.is_superuser
    assert list(user.groups.values_list("name", flat=True)) == [ROLES[role][0]]
    assert all(user.has_perm(p) for p in may), may
    assert not any(user.has_perm(p) for p in may_not), may_not
    assert user.check_password("pw-12345!")


def test_running_it_again_moves_the_member_to_the_new_role(db):
    call_command("create_staff", email="agent@operator.example", role="finance")
    call_command("create_staff", email="agent@operator.example", role="support")

    user = staff("agent@operator.example")
    assert list(user.groups.values_list("name", flat=True)) == ["Support"]
    assert not user.has_perm("billing.refund_topup")


def test_a_bad_email_is_refused(db):
    with pytest.raises(CommandError, match="not an email"):
        call_command("create_staff", email="nobody", role="support")
    assert not User.objects.filter(is_staff=True).exists()


@pytest.mark.parametrize("action", ["refund-topup", "adjust", "change-plan"])
def test_support_made_by_the_command_gets_403_on_finance_actions(action, make_account, client):
    account = make_account()
    paid_topup(account, 20 * USD, now=NOW)
    call_command("create_staff", email="agent@operator.example", role="support")
    client.force_login(staff("agent@operator.example"))

    url = reverse("admin:account_staff_action", args=[account.pk, action])

    assert client.get(url).status_code == 403
    assert (
        client.get(
            reverse("admin:account_staff_action", args=[account.pk, "credit-back"])
        ).status_code
        == 200
    )
