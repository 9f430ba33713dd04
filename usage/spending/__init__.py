"""Spending control (SPEC G1, G3, G4): may this customer spend now, and for how long; credit held
for calls in progress; budgets.
"""
