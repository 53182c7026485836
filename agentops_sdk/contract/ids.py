"""Time-ordered ids (UUIDv7, RFC 9562): their layout and their text form.

Layout: 48-bit Unix milliseconds, version 7, 12 bits of sub-millisecond precision (RFC 9562
method 3), variant, then 62 bits that make the id unique (the SDK puts a salted sequence there;
see :mod:`agentops_sdk.ids`). Ids are 128-bit integers in memory and canonical lowercase UUID
strings on the wire.
"""

from __future__ import annotations

__all__ = ["derive_id", "format_id", "parse_id"]

_VERSION_AND_VARIANT = (0x7 << 76) | (0b10 << 62)
_MASK_62 = (1 << 62) - 1


def derive_id(start_ns: int, sequence: int) -> int:
    """The UUIDv7 (as a 128-bit integer) of something started at ``start_ns``."""
    millis, sub_ms = divmod(start_ns, 1_000_000)
    rand_a = (sub_ms << 12) // 1_000_000
    return (millis << 80) | _VERSION_AND_VARIANT | (rand_a << 64) | (sequence & _MASK_62)


def format_id(value: int) -> str:
    """Format an id as a canonical lowercase UUID string."""
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def parse_id(text: str) -> int:
    """Parse a UUID string back into the integer form."""
    return int(text.replace("-", ""), 16)
