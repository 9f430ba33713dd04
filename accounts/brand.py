"""The operator's brand: what customers see on every page, email and document (README,
Configuration). The defaults are Meterline's own, which the demo keeps."""

import re
from email.utils import formataddr, parseaddr

from django.conf import settings
from django.templatetags.static import static

DEFAULT_PRIMARY_COLOR = "#4353d8"
HEX_COLOR = re.compile(r"^#[0-9a-fA-F]{6}$")


def primary_color() -> str:
    """Return the brand colour as #rrggbb; a malformed setting falls back to the default.

    Only this fixed shape reaches the brand's style sheet, so a setting cannot inject CSS.
    """
    color = settings.BRAND_PRIMARY_COLOR.strip()
    return color.lower() if HEX_COLOR.match(color) else DEFAULT_PRIMARY_COLOR


def soft_color(color: str) -> str:
    """Return the colour mixed 90% with white: the background of the current navigation item."""
    channels = [int(color[i : i + 2], 16) for i in (1, 3, 5)]
    return "#" + "".join(f"{round(255 - (255 - c) * 0.1):02x}" for c in channels)


def logo_url() -> str:
    """Return the logo's address, a static file served by this site (no CDN), or ''."""
    logo = settings.BRAND_LOGO.strip()
    if not logo or "://" in logo or logo.startswith("//"):
        return ""
    return static(logo.lstrip("/"))


def email_sender() -> str:
    """Return the From header: the brand's sender name with DEFAULT_FROM_EMAIL's address."""
    _, address = parseaddr(settings.DEFAULT_FROM_EMAIL)
    name = settings.EMAIL_SENDER_NAME or settings.BRAND_NAME
    return formataddr((name, address or settings.DEFAULT_FROM_EMAIL))


def brand() -> dict:
    """Return the brand as templates read it: `{{ brand.name }}`, `{{ brand.logo_url }}`, ..."""
    color = primary_color()
    return {
        "name": settings.BRAND_NAME,
        "logo_url": logo_url(),
        "primary_color": color,
        "custom_color": color != DEFAULT_PRIMARY_COLOR,
        "support_email": settings.SUPPORT_EMAIL,
        "support_url": settings.SUPPORT_URL,
        "sender_name": settings.EMAIL_SENDER_NAME or settings.BRAND_NAME,
    }
