"""URLs as they may be shown: in logs, STATUS lines, errors and check-config output.

User-info (``user:pass@``), paths (webhook tokens, ntfy topics) and queries
(``?token=``) are secrets often enough that they are never shown: only the
scheme, host and port are.
"""

from __future__ import annotations

from urllib.parse import quote, unquote, urlsplit, urlunsplit


def redact_url(url: str) -> str:
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<invalid URL>"
    if not parts.scheme or not host:
        return "<URL>"
    hidden = "/…" if (parts.path not in ("", "/") or parts.query or parts.fragment) else ""
    userinfo = "***@" if "@" in parts.netloc else ""
    return f"{parts.scheme}://{userinfo}{host}{port}{hidden}"


def split_login(url: str) -> tuple[str, str, str]:
    """(url without user-info, username, password), the login percent-decoded."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url, "", ""
    login, _, host = parts.netloc.rpartition("@")
    username, _, password = login.partition(":")
    bare = urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))
    return bare, unquote(username), unquote(password)


def with_login(url: str, username: str, password: str) -> str:
    """The URL with user-info, for clients that only take it there (FFmpeg's RTSP)."""
    bare, _, _ = split_login(url)
    parts = urlsplit(bare)
    login = quote(username, safe="") + (":" + quote(password, safe="") if password else "")
    return urlunsplit(
        (parts.scheme, f"{login}@{parts.netloc}", parts.path, parts.query, parts.fragment)
    )
