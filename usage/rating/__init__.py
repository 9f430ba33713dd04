"""Rating (SPEC U1-U11): pure rules that turn a report into billable quantities and a cost (no
database, no clock), and the explanation people read.
"""
