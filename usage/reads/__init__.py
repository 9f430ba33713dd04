"""Every hand-written SQL read of usage (keys, calls, events) and the reads of the daily rollups
(period spend). Each returns plain values or model instances built the way the ORM builds them,
and each raw read has a test that holds it equal to its ORM form.
"""
