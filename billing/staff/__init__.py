"""What staff do to accounts from admin: refunds, grants, adjustments, plan changes, invoices.

Every action here (SPEC P4, S1, S2, I1):
- checks the staff member's permission (custom permissions on AuditRecord and Refund; the
  Support and Finance groups are created by a migration) and the Support limit (`checks`);
- takes the form's one-time token as its idempotency key, so a double submission does it once
  (`audit`);
- goes through the same services as everything else (billing.ledger, billing.payments.refunds,
  billing.invoicing.invoices);
- writes an AuditRecord (who, when, what, why, before and after) in the same transaction
  (`audit`).

Refunds above REFUND_APPROVAL_THRESHOLD_MICROS wait for a second staff member's approval
(`approval_requests`, decided in `approvals`).

Callers use the functions re-exported here: `from billing import staff; staff.credit_back(...)`.
"""

from billing.staff.approval_requests import approval_threshold_micros
from billing.staff.approvals import decide_approval
from billing.staff.audit import Outcome, readable_changes
from billing.staff.checks import StaffActionError, support_limit_micros
from billing.staff.credit import adjust_balance, credit_back, grant_credit
from billing.staff.invoices import mark_uncollectible, resend_invoice, void_invoice
from billing.staff.plans import approve_allowance, change_own_plan, change_plan
from billing.staff.prices import past_price_problem, rate_key_problem, record_past_price
from billing.staff.refunds import refund_topup

__all__ = [
    "Outcome",
    "StaffActionError",
    "adjust_balance",
    "approval_threshold_micros",
    "approve_allowance",
    "change_own_plan",
    "change_plan",
    "credit_back",
    "decide_approval",
    "grant_credit",
    "mark_uncollectible",
    "past_price_problem",
    "rate_key_problem",
    "readable_changes",
    "record_past_price",
    "refund_topup",
    "resend_invoice",
    "support_limit_micros",
    "void_invoice",
]
