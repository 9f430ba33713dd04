"""Plans and what an account gets from one (SPEC S1, S2, U3, U9): subscriptions, rate cards,
included allowances, opening accounts and subaccounts, and the example plans.
"""
