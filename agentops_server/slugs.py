"""URL-safe slugs for org names (``Acme Corp.`` → ``acme-corp``)."""

from __future__ import annotations

import re
import unicodedata

__all__ = ["SLUG_PATTERN", "slugify"]

SLUG_PATTERN = r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$"
"""What a slug may be: lower-case letters, digits and inner hyphens, 1 to 64 characters."""


def slugify(name: str) -> str:
    """The slug of ``name``: ASCII, lower case, words joined by hyphens, at most 64 characters."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")[:64].strip("-")
    return slug or "org"
