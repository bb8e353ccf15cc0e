"""Errors raised by the Daraja client.

What matters to a caller is whether the customer's phone may have received a prompt,
so the tree is organised around that:

```
DarajaError                 base; message, error_code, http_status, request_id
├── DarajaAuthError         OAuth refused (wrong key/secret: HTTP 400 with an empty body;
│                           400.008.01/02), or a 401 / 404.001.03 / 401.003.01 that persisted
│                           after one token refresh
├── DarajaRejected          Daraja refused the request definitively; nothing was sent to the
│   │                       phone (400.002.02 invalid field; 500.001.1001 on a push: wrong
│   │                       credentials, merchant missing, subscriber locked; any other error
│   │                       body with an errorCode; a 200 whose ResponseCode is not "0")
│   └── DarajaBusy          500.003.02 spike arrest, 500.003.03 quota violation, HTTP 429:
│                           retry later; `retry_after` seconds (Retry-After header, else 60)
├── DarajaUnavailable       Daraja could not be reached, or answered 5xx without an error
│                           body, or answered garbage; a push was NOT accepted
├── DarajaTimeout           the request may have reached Daraja but no answer came (read or
│                           write timeout, connection dropped after sending, or an unreadable
│                           200 to a push): for a push the outcome is UNKNOWN, never resend it
└── DarajaStillProcessing   STK Query only: 500.001.1001 means the customer has not answered
                            yet; still pending, not failed
```

Codes are matched, never messages: Daraja's texts have typos and change.
"""

from __future__ import annotations

import math
from typing import Literal

import httpx

__all__ = [
    "DarajaAuthError",
    "DarajaBusy",
    "DarajaError",
    "DarajaRejected",
    "DarajaStillProcessing",
    "DarajaTimeout",
    "DarajaUnavailable",
    "error_from_response",
    "json_object",
    "normalise_code",
]

Operation = Literal["oauth", "push", "query"]

TRANSACTION_IN_PROGRESS = "500.001.1001"
_INVALID_TOKEN = frozenset({"404.001.03", "401.003.01"})
_OAUTH_REFUSED = frozenset({"400.008.01", "400.008.02"})
_BUSY = frozenset({"500.003.02", "500.003.03"})
DEFAULT_RETRY_AFTER = 60.0


class DarajaError(Exception):
    def __init__(
        self,
        message: str,
        *,
        error_code: str | None = None,
        http_status: int | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.error_code = error_code
        self.http_status = http_status
        self.request_id = request_id


class DarajaAuthError(DarajaError):
    pass


class DarajaRejected(DarajaError):
    pass


class DarajaBusy(DarajaRejected):
    def __init__(
        self,
        message: str,
        *,
        retry_after: float = DEFAULT_RETRY_AFTER,
        error_code: str | None = None,
        http_status: int | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(
            message, error_code=error_code, http_status=http_status, request_id=request_id
        )
        self.retry_after = retry_after


class DarajaUnavailable(DarajaError):
    pass


class DarajaTimeout(DarajaError):
    pass


class DarajaStillProcessing(DarajaError):
    pass


def json_object(response: httpx.Response) -> dict[str, object] | None:
    """The body as a JSON object, or None for anything else (empty, HTML, a list...)."""
    try:
        body = response.json()
    except ValueError:  # JSONDecodeError and UnicodeDecodeError both derive from it
        return None
    return body if isinstance(body, dict) else None


def normalise_code(value: object) -> str:
    """A Daraja code as text: `0`, `"0"` and `0.0` all become `"0"`; anything odd becomes `""`."""
    if isinstance(value, bool):
        return ""
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return value.strip() if isinstance(value, str) else ""


def _retry_after(response: httpx.Response) -> float:
    try:
        seconds = float(response.headers.get("Retry-After", ""))
    except ValueError:
        return DEFAULT_RETRY_AFTER
    return seconds if math.isfinite(seconds) and seconds >= 0 else DEFAULT_RETRY_AFTER


def error_from_response(response: httpx.Response, *, operation: Operation) -> DarajaError:
    """Map an unsuccessful Daraja answer to the exception that says what happened."""
    status = response.status_code
    body = json_object(response) or {}
    code = normalise_code(body.get("errorCode")) or None
    message = body.get("errorMessage")
    request_id = body.get("requestId")
    rid = request_id if isinstance(request_id, str) and request_id else None
    text = message if isinstance(message, str) and message else f"Daraja answered HTTP {status}"

    if code in _BUSY or status == 429:
        retry_after = _retry_after(response)
        return DarajaBusy(
            text, retry_after=retry_after, error_code=code, http_status=status, request_id=rid
        )
    if operation == "oauth":
        auth_refused = status < 500 or code in _OAUTH_REFUSED
    else:
        auth_refused = status == 401 or code in _INVALID_TOKEN
    cls: type[DarajaError]
    if auth_refused:
        cls = DarajaAuthError
    elif operation == "query" and code == TRANSACTION_IN_PROGRESS:
        cls = DarajaStillProcessing
    elif code is None and status >= 500:
        cls = DarajaUnavailable
    else:
        cls = DarajaRejected
    return cls(text, error_code=code, http_status=status, request_id=rid)
