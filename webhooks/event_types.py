"""Every event type an endpoint can receive, with what it means (docs/webhooks.md has examples)."""

EVENT_TYPES: dict[str, str] = {
    "customer.created": "A customer account was opened (API, admin, sign-up or command).",
    "customer.updated": "A customer's name, billing emails, metadata or plan changed.",
    "credit.granted": "Credit was granted to a customer (promotion, staff, plan, purchase).",
    "balance.low": "The balance fell below the customer's low-balance threshold.",
    "balance.depleted": "The balance reached zero or less.",
    "allowance.threshold_reached": "A share of the period's included allowance was used.",
    "budget.reached": "A spending budget's limit was reached.",
    "topup.succeeded": "A top-up payment succeeded and its credit was added.",
    "topup.failed": "A top-up payment failed.",
    "auto_topup.succeeded": "An automatic top-up charged the saved card.",
    "auto_topup.failed": "An automatic top-up was declined.",
    "auto_topup.action_required": "An automatic top-up needs the customer to confirm (3-D Secure).",
    "invoice.issued": "An invoice or statement was issued.",
    "invoice.paid": "An invoice was paid.",
    "invoice.payment_failed": "Charging an invoice failed.",
    "account.past_due": "The account has an overdue invoice and is past due.",
    "account.reinstated": "A past-due account paid and is in good standing again.",
    "call.refunded": "What a call was charged was credited back.",
    "refund.succeeded": "A payment was refunded to the customer's card.",
}
