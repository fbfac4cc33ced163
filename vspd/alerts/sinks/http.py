"""One HTTP POST for the webhook and ntfy sinks, with failures classified."""

from __future__ import annotations

import email.utils
import math
import time
import urllib.error
import urllib.request

from vspd.alerts.errors import DeliveryError
from vspd.alerts.sinks.payload import header_value
from vspd.urls import redact_url

# Worth retrying: the receiver is busy or briefly broken. Other 4xx are final.
_RETRIABLE_STATUS = {408, 425, 429}


def post(url: str, body: bytes, headers: dict[str, str], timeout_s: float) -> None:
    """POST; DeliveryError (retriable or not) unless the answer is 2xx."""
    # Values come partly from data (camera ids, messages): no CR/LF can split a header.
    clean = {name: header_value(value) for name, value in headers.items()}
    # The config only admits http:// and https:// URLs for sinks.
    request = urllib.request.Request(url, data=body, headers=clean, method="POST")  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310
            response.read()
    except urllib.error.HTTPError as exc:
        retry_after = retry_after_s(exc.headers.get("Retry-After")) if exc.headers else None
        exc.close()
        retriable = exc.code >= 500 or exc.code in _RETRIABLE_STATUS
        raise DeliveryError(
            f"HTTP {exc.code} from {redact_url(url)}",
            retriable=retriable,
            retry_after_s=retry_after if retriable else None,
        ) from None
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        raise DeliveryError(f"{redact_url(url)}: {getattr(exc, 'reason', exc)}") from None


def retry_after_s(value: str | None, now: float | None = None) -> float | None:
    """Retry-After (RFC 9110): delay-seconds or an HTTP-date; None if absent or unreadable."""
    if not value:
        return None
    text = value.strip()
    if text.isdigit():
        return float(int(text[:12]))
    try:
        moment = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    seconds = moment.timestamp() - (time.time() if now is None else now)
    return max(0.0, seconds) if math.isfinite(seconds) else None
