"""Emails about money moving (SPEC N1, N2): low and zero balance (a balance watcher), and the
allowance used.
"""
