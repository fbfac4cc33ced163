"""File names from data (camera ids, event keys) and where they may be written.

Everything a daemon writes under its own directory goes through here: a name
from a message becomes a safe slug, and the joined path is resolved and
checked to stay inside the directory, so that no id (``../../x``, a NUL, a
leading dot) can write elsewhere.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from urllib.parse import quote

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")
MAX_NAME = 120


class UnsafePathError(ValueError):
    """A path built from data would leave the directory it belongs in."""


def safe_name(text: str) -> str:
    """A file-name component for `text`: itself when harmless, else a slug plus a short hash."""
    slug = _UNSAFE.sub("_", text).lstrip(".")[:MAX_NAME]
    if slug == text and slug not in ("", ".", ".."):
        return slug
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:10]
    return f"{slug or 'x'}-{digest}"


def inside(base: Path, *parts: str) -> Path:
    """base/parts..., refusing anything that resolves outside base."""
    root = base.resolve()
    path = root.joinpath(*parts).resolve()
    if path != root and root not in path.parents:
        raise UnsafePathError(f"{'/'.join(parts)!r} would be outside {root}")
    return path


def relative_link(*parts: str) -> str:
    """A relative URL for an HTML page: every part URL-quoted, so no scheme can appear."""
    return "./" + "/".join(quote(part, safe="") for part in parts)
