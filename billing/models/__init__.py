"""Billing models, split by topic and re-exported here."""

from billing.models.alert_settings import AlertSettings
from billing.models.allowances import Allowance
from billing.models.budgets import Budget
from billing.models.documents import BillingDetails, Receipt, ReceiptNumberSequence
from billing.models.invoices import (
    ALLOWED_TRANSITIONS,
    Invoice,
    InvoiceKind,
    InvoiceLine,
    InvoiceNumberSequence,
    InvoicePayment,
    InvoiceReason,
    InvoiceStatus,
    PaymentStatus,
    UnbilledLine,
)
from billing.models.ledger import (
    CREDIT_KINDS,
    AppendOnlyError,
    CreditGrant,
    EntryKind,
    LedgerCheck,
    LedgerEntry,
)
from billing.models.notifications import Notification, NotificationStatus
from billing.models.payment_methods import PaymentMethod, TestCardBehaviour
from billing.models.payments import (
    OFF_SESSION_KINDS,
    AutoTopUpSettings,
    RecurringCreditPurchase,
    RecurringCreditSettings,
    Refund,
    RefundStatus,
    TopUp,
    TopUpKind,
    TopUpStatus,
)
from billing.models.plan_fees import (
    FeeChargeKind,
    FeePaidBy,
    PlanFee,
    PlanFeeCharge,
)
from billing.models.plans import (
    FeePayment,
    ModelKind,
    ModelPrice,
    Plan,
    Rate,
    RateComponent,
    Rounding,
)
from billing.models.signup_credit import SignupCreditClaim
from billing.models.staff import (
    ApprovalStatus,
    AuditRecord,
    RefundApproval,
    StaffAction,
)
from billing.models.subscriptions import AllowanceUnlock, Subscription

__all__ = [
    "ALLOWED_TRANSITIONS",
    "CREDIT_KINDS",
    "OFF_SESSION_KINDS",
    "AlertSettings",
    "Allowance",
    "AllowanceUnlock",
    "AppendOnlyError",
    "ApprovalStatus",
    "AuditRecord",
    "AutoTopUpSettings",
    "BillingDetails",
    "Budget",
    "CreditGrant",
    "EntryKind",
    "FeeChargeKind",
    "FeePaidBy",
    "FeePayment",
    "Invoice",
    "InvoiceKind",
    "InvoiceLine",
    "InvoiceNumberSequence",
    "InvoicePayment",
    "InvoiceReason",
    "InvoiceStatus",
    "LedgerCheck",
    "LedgerEntry",
    "ModelKind",
    "ModelPrice",
    "Notification",
    "NotificationStatus",
    "PaymentMethod",
    "PaymentStatus",
    "Plan",
    "PlanFee",
    "PlanFeeCharge",
    "Rate",
    "RateComponent",
    "Receipt",
    "ReceiptNumberSequence",
    "RecurringCreditPurchase",
    "RecurringCreditSettings",
    "Refund",
    "RefundApproval",
    "RefundStatus",
    "Rounding",
    "SignupCreditClaim",
    "StaffAction",
    "Subscription",
    "TestCardBehaviour",
    "TopUp",
    "TopUpKind",
    "TopUpStatus",
    "UnbilledLine",
]
