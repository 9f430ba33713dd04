"""The customer's email about each staff money action (issue 16, item 2).

A refund of a call or an event, a credit-back, a grant, an adjustment and a refund to the card
each email the account's billing contacts, text and HTML, with the reason staff wrote for the
customer and never the internal note; once per action, however often the form is posted.
"""

import pytest

from billing import staff
from billing.money import format_usd_exact
from tests.billing.staff.scenery import charged_sms, topup_of
from tests.billing.staff_data import USD, new_key
from tests.conftest import NOW
from tests.usage.metering import call
from usage.ingest.calls import report_call
from usage.ingest.staff_refunds import refund_usage_by_staff

REASON = "Our gateway sent your SMS twice"
NOTE = "ticket 4711: carrier bug, do not tell them about the carrier"
CONTACT = "accounts-payable@customer.example"


def refund_call(actor, account, key):
    charged, _ = report_call(report=call(account, 180), now=NOW)
    return charged.charged_micros, charged.call_id, lambda: refund_usage_by_staff(
        item=charged, amount_micros=charged.charged_micros, reason=REASON, note=NOTE,
        actor=actor, key=key, now=NOW,
    )  # fmt: skip


def refund_event(actor, account, key):
    event = charged_sms(account)
    return event.charged_micros, event.event_id, lambda: refund_usage_by_staff(
        item=event, amount_micros=event.charged_micros, reason=REASON, note=NOTE,
        actor=actor, key=key, now=NOW,
    )  # fmt: skip


def money_action(action):
    def prepare(actor, account, key):
        return 7 * USD, "", lambda: action(
            account=account, amount_micros=7 * USD, reason=REASON, note=NOTE,
            actor=actor, key=key, now=NOW,
        )  # fmt: skip

    return prepare


def take_off(actor, account, key):
    return -3 * USD, "", lambda: staff.adjust_balance(
        account=account, amount_micros=-3 * USD, reason=REASON, note=NOTE,
        actor=actor, key=key, now=NOW,
    )  # fmt: skip


def refund_to_card(actor, account, key):
    return 5 * USD, "top-up of $50.00", lambda: staff.refund_topup(
        topup=topup_of(account), amount_micros=5 * USD, reason=REASON, note=NOTE,
        actor=actor, key=key, now=NOW,
    )  # fmt: skip


ACTIONS = {
    "refund of a call": (refund_call, "We refunded {amount} of call {item}"),
    "refund of an event": (refund_event, "We refunded {amount} of usage event {item}"),
    "credit-back": (money_action(staff.credit_back), "We credited {amount} back"),
    "grant": (money_action(staff.grant_credit), "We added {amount} of credit"),
    "adjustment up": (money_action(staff.adjust_balance), "{amount} added"),
    "adjustment down": (take_off, "{amount} taken off"),
    "refund to the card": (refund_to_card, "We refunded {amount} of your {item}"),
}


@pytest.mark.parametrize("name", list(ACTIONS))
def test_each_staff_money_action_emails_the_billing_contacts_the_reason_never_the_note(
    name, finance, prepaid, mailoutbox, django_capture_on_commit_callbacks
):
    prepare, headline = ACTIONS[name]
    prepaid.extra_billing_emails = CONTACT
    prepaid.save(update_fields=["extra_billing_emails"])
    amount_micros, item, act = prepare(finance, prepaid, new_key())
    mailoutbox.clear()

    with django_capture_on_commit_callbacks(execute=True):
        act()

    [message] = mailoutbox
    expected = headline.format(amount=format_usd_exact(abs(amount_micros)), item=item)
    assert expected in message.subject
    assert set(message.to) == {*prepaid.billing_emails} and CONTACT in message.to
    [(html, mimetype)] = message.alternatives
    assert mimetype == "text/html"
    for text in (message.subject, message.body, html):
        assert NOTE not in text and "ticket 4711" not in text
    assert REASON in message.body and REASON in html
    assert expected in message.body and expected in html
    prepaid.refresh_from_db()
    assert format_usd_exact(prepaid.balance_micros) in message.body


def test_the_same_action_posted_twice_emails_once(
    finance, prepaid, mailoutbox, django_capture_on_commit_callbacks
):
    key = new_key()
    with django_capture_on_commit_callbacks(execute=True):
        for _ in range(2):
            staff.credit_back(
                account=prepaid, amount_micros=2 * USD, reason=REASON, note=NOTE,
                actor=finance, key=key, now=NOW,
            )  # fmt: skip

    assert len(mailoutbox) == 1


def test_a_refund_waiting_for_approval_emails_nobody_until_it_is_carried_out(
    finance, second_finance, prepaid, mailoutbox, django_capture_on_commit_callbacks, settings
):
    settings.REFUND_APPROVAL_THRESHOLD_MICROS = 1 * USD
    with django_capture_on_commit_callbacks(execute=True):
        waiting = staff.credit_back(
            account=prepaid, amount_micros=2 * USD, reason=REASON, note=NOTE,
            actor=finance, key=new_key(), now=NOW,
        )  # fmt: skip
    # The approvers are told (tests/billing/staff/test_approval_flow.py); the customer is not.
    assert [m for m in mailoutbox if m.to == prepaid.billing_emails] == []

    with django_capture_on_commit_callbacks(execute=True):
        staff.decide_approval(
            approval=waiting.pending_approval, approve=True, actor=second_finance,
            reason="Checked", now=NOW,
        )  # fmt: skip

    [message] = [m for m in mailoutbox if m.to == prepaid.billing_emails]
    assert f"We credited {format_usd_exact(2 * USD)} back" in message.subject
    assert message.to == prepaid.billing_emails
