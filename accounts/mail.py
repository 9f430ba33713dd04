"""What every email Meterline sends has in common, whichever app sends it."""

from django.conf import settings
from django.core.mail import mail_admins, send_mail


def one_line_subject(text: str) -> str:
    """Return `text` as an email subject: one line, runs of whitespace as one space.

    Subjects are built from names customers choose (an account's name) and from templates; a
    line break in one is a header injection, which Django refuses (`BadHeaderError`) and so
    the email would never go out.
    """
    return " ".join(text.split())


def mail_staff(subject: str, body: str) -> None:
    """Email the operator's staff: STAFF_ALERT_EMAILS, or ADMINS when that is empty."""
    if settings.STAFF_ALERT_EMAILS:
        send_mail(subject, body, None, settings.STAFF_ALERT_EMAILS)
    else:
        mail_admins(subject, body)
