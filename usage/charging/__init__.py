"""Charging rated usage under the account's lock: the lock and what is read with it, the charge
session, the daily rollups, and the bookkeeping of a credit-back.
"""
