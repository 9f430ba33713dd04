"""The JSON API v1 (SPEC section 11): the ninja app, key authentication, rate limits, the error
shape, request and response schemas, and the operations.
"""
