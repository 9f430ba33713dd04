"""What every email Meterline sends has in common, whichever app sends it."""


def one_line_subject(text: str) -> str:
    """Return `text` as an email subject: one line, runs of whitespace as one space.

    Subjects are built from names customers choose (an account's name) and from templates; a
    line break in one is a header injection, which Django refuses (`BadHeaderError`) and so
    the email would never go out.
    """
    return " ".join(text.split())
