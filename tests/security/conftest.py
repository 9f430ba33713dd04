"""A victim account with one of everything a customer can own, and a stranger next to it.

The tenancy sweep points every URL and API operation at the victim's objects while signed in
(or holding a key) as someone else, so each kind of object an URL can name exists here.
"""

from dataclasses import dataclass

import pytest

from accounts.keys import IssuedKey
from accounts.models import Account, Membership, Role, User
from accounts.team import IssuedInvitation, invite_member
from billing.models import (
    Budget,
    Invoice,
    InvoiceKind,
    InvoiceReason,
    InvoiceStatus,
    PaymentMethod,
    Receipt,
    TestCardBehaviour,
    TopUp,
    TopUpKind,
)
from billing.payments.cards import add_test_card
from billing.payments.topups import fulfil_topup, new_topup
from tests.conftest import NOW
from tests.usage.metering import USD, call
from usage.ingest.calls import report_call
from usage.models import Call
from usage.spending.budgets import create_budget


@dataclass
class World:
    victim: Account
    victim_owner: User
    victim_key: IssuedKey
    member: Membership  # a second member of the victim, whom a role change could target
    invitation: IssuedInvitation
    budget: Budget
    card: PaymentMethod
    topup: TopUp
    invoice: Invoice
    receipt: Receipt
    call: Call
    child: Account
    stranger: User
    stranger_account: Account
    stranger_key: IssuedKey

    def victim_secrets(self) -> list[str]:
        """Strings that identify the victim's objects: none may reach the stranger."""
        return [
            self.victim.public_id,
            self.victim.name,
            self.victim_key.api_key.key_id,
            self.invoice.number,
            self.receipt.number,
            self.topup.public_id,
            self.call.call_id,
            self.child.public_id,
            self.member.user.email,
        ]


@pytest.fixture
def world(make_account, make_user, make_key, add_member):
    owner = make_user("victim-owner@example.test")
    victim = make_account("voice-prepaid", owner=owner, credit_micros=50 * USD, name="Victim Co")
    member = add_member(make_user("victim-dev@example.test"), victim, Role.DEVELOPER)
    invitation = invite_member(
        account=victim,
        email="invitee@example.test",
        role=Role.ADMIN,
        invited_by=owner,
        actor_role=Role.OWNER,
        now=NOW,
    )
    add_test_card(account=victim, behaviour=TestCardBehaviour.SUCCEED, now=NOW)
    # The second card is not the default, so making it the default is a change.
    card = add_test_card(account=victim, behaviour=TestCardBehaviour.DECLINE, now=NOW)
    topup = new_topup(account=victim, kind=TopUpKind.MANUAL, amount_micros=20 * USD, now=NOW)
    invoice = Invoice.objects.create(
        account=victim,
        number="2026-VICTIM1",
        kind=InvoiceKind.INVOICE,
        reason=InvoiceReason.THRESHOLD,
        status=InvoiceStatus.OPEN,
        period_start=NOW,
        period_end=NOW,
        idempotency_key=f"victim:{victim.pk}",
        subtotal_micros=200 * USD,
        total_micros=200 * USD,
        amount_due_micros=200 * USD,
        created_at=NOW,
        issued_at=NOW,
    )
    # A second top-up, paid: its receipt is the one the sweep asks for.
    paid = new_topup(account=victim, kind=TopUpKind.MANUAL, amount_micros=20 * USD, now=NOW)
    fulfil_topup(topup_id=paid.pk, now=NOW)
    receipt = Receipt.objects.get(topup=paid)
    victim_call, _ = report_call(report=call(victim, 83, call_id="victim-call-1"), now=NOW)
    victim_key = make_key(victim)
    budget = create_budget(
        account=victim,
        name="Victim budget",
        amount_micros=100 * USD,
        hard=False,
        now=NOW,
        api_key=victim_key.api_key,
    )
    child = make_account("voice-prepaid", owner=make_user(), parent=victim, name="Victim Child")

    stranger = make_user("stranger@example.test")
    # The stranger's account has no credit: its own API calls are refused and write nothing.
    stranger_account = make_account("voice-prepaid", owner=stranger, name="Stranger Ltd")
    return World(
        victim=victim,
        victim_owner=owner,
        victim_key=victim_key,
        member=member,
        invitation=invitation,
        budget=budget,
        card=card,
        topup=topup,
        invoice=invoice,
        receipt=receipt,
        call=victim_call,
        child=child,
        stranger=stranger,
        stranger_account=stranger_account,
        stranger_key=make_key(stranger_account),
    )
