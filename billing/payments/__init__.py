"""Money from and back to the customer's card (SPEC P1-P6): top-ups, off-session charges and
their back-off, auto-top-up, recurring credit, saved cards, refunds, collecting invoices and
dunning, Stripe's webhooks, and the one gateway every provider call goes through (`gateway`).
"""
