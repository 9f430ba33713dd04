"""The test-mode payment page's answer (SPEC P6): pay or decline, as Stripe would."""

from datetime import datetime

from accounts.models import Account
from billing.models import OFF_SESSION_KINDS, TopUp, TopUpStatus
from billing.payments.gateway import get_gateway
from billing.payments.off_session import charge_failed
from billing.payments.topups import TopUpError, fail_topup, fulfil_topup


def complete_test_topup(*, account: Account, topup_public_id: str, pay: bool, now: datetime):
    """The test-mode payment page's answer: pay or decline, like Stripe would (P6).

    Drives the same code as the webhook: `fulfil_topup` for a payment, the auto-top-up's
    decline handling or `fail_topup` for a decline.
    """
    if not get_gateway().simulated:
        raise TopUpError("The test-mode payment page is off: this site takes real payments.")
    topup = TopUp.objects.filter(account=account, public_id=topup_public_id).first()
    if topup is None:
        raise TopUpError("No such top-up.")
    if topup.status not in (TopUpStatus.PENDING, TopUpStatus.REQUIRES_ACTION):
        return topup
    reference = f"test_pi_{topup.public_id}"
    if pay:
        return fulfil_topup(topup_id=topup.pk, now=now, payment_intent_id=reference)
    if topup.kind in OFF_SESSION_KINDS:
        charge_failed(topup_id=topup.pk, now=now, error="Your card was declined.")
        return TopUp.objects.get(pk=topup.pk)
    return fail_topup(topup_id=topup.pk, now=now, error="Your card was declined.")
