"""Kenyan mobile numbers in every form customers type them, normalised to `254XXXXXXXXX`."""

from __future__ import annotations

import re

# Safaricom issues mobile numbers in the 07xx and 01xx ranges: 254 + 9 digits starting 7 or 1.
_MSISDN = re.compile(r"254[71]\d{8}")
_SEPARATORS = re.compile(r"[\s\-().]")


class InvalidPhoneNumber(ValueError):
    """The text is not a Kenyan mobile number."""


def normalize_msisdn(raw: str) -> str:
    """Return `254XXXXXXXXX` for `07..`, `01..`, `+254..`, `254..`, bare `7..`/`1..`.

    Spaces, dashes, dots and brackets are ignored; anything else is refused.
    """
    text = _SEPARATORS.sub("", raw)
    if text.startswith("+"):
        text = text[1:]
    if not text.isdigit() or not text.isascii():
        raise InvalidPhoneNumber("phone number must be a Kenyan mobile number, e.g. 0712345678")
    if len(text) == 10 and text[0] == "0":
        text = "254" + text[1:]
    elif len(text) == 9:
        text = "254" + text
    if not _MSISDN.fullmatch(text):
        raise InvalidPhoneNumber("phone number must be a Kenyan mobile number, e.g. 0712345678")
    return text


def is_msisdn(text: str) -> bool:
    """True for an already normalised `2547XXXXXXXX` / `2541XXXXXXXX`."""
    return _MSISDN.fullmatch(text) is not None
