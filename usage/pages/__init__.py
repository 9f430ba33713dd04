"""The customer dashboard's usage pages (SPEC D1, D2): overview, breakdowns, the usage log, the
run-out estimate, and their views, forms and URLs.
"""
