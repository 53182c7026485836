"""What the hub accepts for each kind of value: one check per kind, run where a request is decoded.

Every schema the hub decodes (JSON bodies and query parameters, in ``api/v1`` and ``services``)
declares its strings and moments with these types. Decoding a value runs its kind's check
(:mod:`agentops_server.api.decoding` registers them with Litestar), so no route repeats one and
none can forget one; a value that fails is a ``400`` problem with its kind's code:

=============  ==========================================================  ======================
type           what it holds                                               refusal
=============  ==========================================================  ======================
``Name``       a display name (person, org, team, key): surrounding        ``invalid_name``
               space dropped, at most 200 characters, no control
               character
``Text``       free text and identifiers (filters, emails, passwords,      ``invalid_text``
               tokens, slugs...): no NUL, no control character but tab,
               line feed and carriage return, no lone surrogate; at
               most 4,096 characters
``Timestamp``  an ISO 8601 moment (UTC when it has no offset) that is      ``invalid_timestamp``
               still within years 1 to 9999 once moved to UTC
=============  ==========================================================  ======================

Bodies are decoded by :func:`decode_json`: at most :data:`MAX_JSON_DEPTH` levels deep
(``json_too_deep``), the ingest routes' included.

A kind checks what no value of its kind may be (what PostgreSQL cannot store: its text holds no
NUL; what is no moment at all: past 9999-12-31 in UTC), and caps its length far above any use.
What a value must be in the domain (an email address, a slug's form, a token the hub issued, a
logo URL) the services check, answering their own codes (``invalid_email``, ``invalid_slug``...).
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any, ClassVar, Self

import msgspec

from agentops_server.db.types import to_utc
from agentops_server.refusals import Invalid

__all__ = [
    "MAX_JSON_DEPTH",
    "Name",
    "Text",
    "Timestamp",
    "clean_name",
    "decode_json",
]

MAX_JSON_DEPTH = 64
"""The deepest nesting of arrays and objects a body may have (the SDK's captured values are at
most 8 levels deep inside an event)."""

_CONTAINERS = (dict, list)
_TEXT_FORBIDDEN = r"\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f\ud800-\udfff"
"""Control characters but tab, line feed and carriage return; lone surrogates (UTF-16 halves
that encode no character, which no database can store)."""
_NAME_FORBIDDEN = r"\u0000-\u001f\u007f-\u009f\ud800-\udfff"
"""Every control character (C0, DEL, C1); lone surrogates."""


class Text(str):
    """Free text or an identifier: no NUL, no control character but tab, line feed and carriage
    return, no lone surrogate, at most :attr:`max_length` characters.

    ``Text(value)`` checks ``value`` and raises ``Invalid`` with :attr:`code` when it fails.
    """

    max_length: ClassVar[int] = 4096
    code: ClassVar[str] = "invalid_text"
    noun: ClassVar[str] = "A text"
    """How refusals name a value of this kind."""
    forbidden: ClassVar[str] = _TEXT_FORBIDDEN
    """The characters refused, as the body of a regular expression's character class."""
    _refused: ClassVar[re.Pattern[str]] = re.compile(f"[{_TEXT_FORBIDDEN}]")

    def __init_subclass__(cls, *, max_length: int | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if max_length is not None:
            cls.max_length = max_length
        cls._refused = re.compile(f"[{cls.forbidden}]")

    def __new__(cls, value: str) -> Self:
        return super().__new__(cls, cls._checked(value))

    @classmethod
    def _checked(cls, value: str) -> str:
        """``value`` as this kind keeps it; ``Invalid`` (with :attr:`code`) if it cannot be."""
        if len(value) > cls.max_length:
            raise Invalid(cls.code, f"{cls.noun} has at most {cls.max_length} characters.")
        if found := cls._refused.search(value):
            raise Invalid(
                cls.code,
                f"{cls.noun} cannot hold the character U+{ord(found.group()):04X} "
                "(control characters and lone surrogates are refused).",
            )
        return value

    @classmethod
    def pattern(cls) -> str:
        """The check as a regular expression (for the OpenAPI schema; length aside)."""
        return f"^[^{cls.forbidden}]*$"


class Name(Text, max_length=200):
    """A display name (a person, an org, a team, a key): surrounding space dropped, at most
    200 characters, no control character at all."""

    code = "invalid_name"
    noun = "A name"
    forbidden = _NAME_FORBIDDEN

    @classmethod
    def _checked(cls, value: str) -> str:
        return super()._checked(value.strip())


class Timestamp(dt.datetime):
    """An ISO 8601 moment, UTC when it has no offset; decoded as an aware UTC datetime.

    ``Timestamp.parse(value)`` raises ``Invalid("invalid_timestamp")`` for text that is not a
    moment, and for a moment outside years 1 to 9999 once moved to UTC
    (``9999-12-31T23:59:59-14:00`` is one).
    """

    code: ClassVar[str] = "invalid_timestamp"

    @classmethod
    def parse(cls, value: object) -> Timestamp:
        """``value`` (ISO 8601 text, or a datetime) as an aware UTC :class:`Timestamp`."""
        try:
            moment = msgspec.convert(value, dt.datetime)
        except msgspec.ValidationError as exc:
            raise Invalid(cls.code, f"Not an ISO 8601 moment: {exc}.") from None
        try:
            utc = to_utc(moment)
        except OverflowError:
            raise Invalid(cls.code, "The moment is outside years 1 to 9999 in UTC.") from None
        return cls(
            utc.year,
            utc.month,
            utc.day,
            utc.hour,
            utc.minute,
            utc.second,
            utc.microsecond,
            tzinfo=dt.UTC,
        )


def decode_json(body: bytes | str) -> Any:
    """``body`` decoded, if it nests at most :data:`MAX_JSON_DEPTH` levels.

    Raises ``msgspec.DecodeError`` for text that is not JSON, and ``Invalid("json_too_deep")``
    for a document nested deeper (however deep: the decoder's own recursion limit included).
    """
    try:
        document = msgspec.json.decode(body)
    except RecursionError:
        raise _too_deep() from None
    if _deeper_than(document, MAX_JSON_DEPTH):
        raise _too_deep()
    return document


def _deeper_than(document: Any, limit: int) -> bool:
    """Whether ``document`` (as the decoder made it: plain dicts and lists) nests more than
    ``limit`` levels; level by level, without recursion."""
    level = [document] if type(document) in _CONTAINERS else []
    depth = 0
    while level:
        depth += 1
        if depth > limit:
            return True
        level = [
            child
            for node in level
            for child in (node.values() if type(node) is dict else node)
            if type(child) in _CONTAINERS
        ]
    return False


def _too_deep() -> Invalid:
    return Invalid(
        "json_too_deep", f"The body nests more than {MAX_JSON_DEPTH} levels of arrays and objects."
    )


def clean_name(value: str, *, what: str) -> str:
    """``value`` as a :class:`Name` (stripped), which an org, a team or
    a key (``what``) must have: ``invalid_name`` if it is blank or is no name."""
    name = Name(value)
    if not name:
        raise Invalid("invalid_name", f"A {what} name has 1 to {Name.max_length} characters.")
    return name
