"""Called numbers in one form (SPEC U3): E.164, so that destination prefixes match them.

Destination rates are keyed by E.164 prefixes (`+44`, `+4420`). A number reported with spaces,
dashes, brackets or the international prefix 00 (`+44 20 7946 0000`, `0044 20 7946 0000`) is
the same number as `+442079460000` and must match the same prefix; as raw text it matched the
shorter one or none, and priced the call wrong.
"""

import phonenumbers

from usage.reports import UsageError

# The international call prefix of most countries (ITU-T E.164 recommends it); a number in
# national format (no country code) is refused, since guessing its country would guess its price.
INTERNATIONAL_PREFIX = "00"


def destination_e164(raw: str, *, param: str = "destination") -> str:
    """Return the called number `raw` in E.164 (`+442079460000`); empty stays empty.

    Raise UsageError (400) naming `param` when it is not a valid international number.
    """
    text = raw.strip()
    if not text:
        return ""
    if text.startswith(INTERNATIONAL_PREFIX):
        text = "+" + text[len(INTERNATIONAL_PREFIX) :]
    problem = (
        f"{param} must be a valid phone number in international format, such as "
        "+44 20 7946 0000 or 0044 20 7946 0000."
    )
    try:
        # No default region: only international numbers are accepted.
        number = phonenumbers.parse(text, None)
    except phonenumbers.NumberParseException:
        raise UsageError(problem, param=param) from None
    if not phonenumbers.is_valid_number(number):
        raise UsageError(problem, param=param)
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
