"""The audit trail of staff actions, and the one-time form key that makes each action happen once.

Every action writes one AuditRecord (who, when, what, why, before and after) in the transaction
that does the work. The record's unique idempotency key is `<action>:<form token>`, so finding
the record is how an action knows a double submission was already done.
"""

from dataclasses import dataclass
from datetime import datetime

from django.contrib.contenttypes.models import ContentType
from django.db import models

from accounts.models import Account, ApiKey, User
from billing.models import AuditRecord, RefundApproval
from billing.money import format_usd_exact

ALREADY_DONE = "Already done."


@dataclass(frozen=True)
class Outcome:
    message: str
    record: AuditRecord | None = None
    pending_approval: RefundApproval | None = None


def audit_key(action: str, key: str) -> str:
    return f"{action}:{key}"[:120]


def already_done(action: str, key: str) -> AuditRecord | None:
    """Return the record of the action done with this form key, if it was done."""
    return AuditRecord.objects.filter(idempotency_key=audit_key(action, key)).first()


def balance_state(account: Account) -> dict:
    return {"balance_micros": account.balance_micros}


@dataclass(frozen=True)
class Audit:
    """One staff action's entry in the audit trail: what is known before the action starts."""

    action: str
    # The staff user, or None when the operator's platform key acts through the API
    # (`actor_key`).
    actor: User | None
    reason: str
    key: str
    now: datetime
    # Staff's internal note: kept in the audit trail, never shown to the customer.
    note: str = ""
    actor_key: ApiKey | None = None

    def done(self) -> AuditRecord | None:
        return already_done(self.action, self.key)

    def repeated(self, message: str = ALREADY_DONE) -> Outcome | None:
        """Return the outcome of a double submission whose first was already done, else None."""
        if record := self.done():
            return Outcome(message, record)
        return None

    def write(
        self,
        *,
        account: Account | None,
        before: dict,
        after: dict,
        target: models.Model | None = None,
    ) -> AuditRecord:
        """Insert the record; call it in the transaction that does the action."""
        return AuditRecord.objects.create(
            actor=self.actor,
            actor_key=self.actor_key,
            at=self.now,
            action=self.action,
            account=account,
            target_type=ContentType.objects.get_for_model(target) if target is not None else None,
            target_id=str(target.pk) if target is not None else "",
            reason=self.reason,
            note=self.note,
            before=before,
            after=after,
            idempotency_key=audit_key(self.action, self.key),
        )


def readable_changes(record: AuditRecord) -> list[tuple[str, str, str]]:
    """Return what the record says changed, as (what, before, after) for people: amounts in
    dollars to the micro-dollar, "-" where a side does not say."""
    keys = dict.fromkeys([*record.before, *record.after])
    return [
        (
            key.removesuffix("_micros").replace("_", " ").capitalize(),
            _readable(key, record.before.get(key)),
            _readable(key, record.after.get(key)),
        )
        for key in keys
    ]


def _readable(key: str, value) -> str:
    if value is None:
        return "-"
    if key.endswith("_micros") and isinstance(value, int):
        return format_usd_exact(value)
    return str(value)
