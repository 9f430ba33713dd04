"""The account pages of the customer dashboard (SPEC A2-A4, D4): the page shell every dashboard page
shares, overview, API keys, team and subaccounts.
"""
