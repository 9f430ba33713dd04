"""What a public id looks like, the one place that parses one from a URL or a form.

Public ids (accounts, API keys, top-ups, holds: `acc_3f9k...`; invoice numbers: `2026-000001`)
are letters, digits, `_` and `-`. Anything else, a NUL byte above all (PostgreSQL refuses it in
a query, which would answer 500), names nothing: the page answers 404 without asking the
database.
"""

import re

PUBLIC_ID_REGEX = r"[A-Za-z0-9_-]{1,64}"
_PUBLIC_ID = re.compile(PUBLIC_ID_REGEX)


def is_public_id(text: str) -> bool:
    """Return whether `text` can be a public id; a lookup of anything else finds nothing."""
    return isinstance(text, str) and _PUBLIC_ID.fullmatch(text) is not None


class PublicIdConverter:
    """The `<public_id:...>` URL converter: a path with anything else in its place is a 404."""

    regex = PUBLIC_ID_REGEX

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value
