"""SQL helpers that know no domain: model instances from raw rows, COPY inserts, row updates,
additive upserts and keyset cursors. Used by billing and usage alike.
"""
