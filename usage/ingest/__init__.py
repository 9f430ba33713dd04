"""What the platform reports (SPEC U1-U10): call reports and batches of events, their checks and
fingerprints, rated and charged once.
"""
