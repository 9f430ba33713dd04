"""Invoices and statements (SPEC I1-I4): what is unbilled, drafting and numbering invoices,
threshold invoicing, period close, the documents people read (HTML and PDF) and their emails.
"""
