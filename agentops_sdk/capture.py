"""Snapshots of inputs and outputs, taken at call time.

A snapshot is a JSON-safe copy: later mutation of the original cannot change what was recorded.
On the hot path, :func:`freeze` and :func:`freeze_arguments` do the least that guarantees this:
immutable values are kept as they are and flat containers of them are copied shallowly, marked
as deferred; the worker thread turns those into bounded JSON with :func:`render`.
Anything else is snapshotted at once.

It is bounded: one character budget per snapshot (``max_capture_chars``), which text spends by
its length and every other value by at least one character, at most ``MAX_ITEMS`` items per
container and ``MAX_DEPTH`` levels, so the cost and the size of a recorded value never grow with
the data an agent passes around (a nested list of numbers included). Anything that is not a plain
JSON value is recorded through ``model_dump()`` (pydantic), its dataclass fields, or ``repr()``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping
from math import isfinite
from typing import Any

__all__ = [
    "MAX_DEPTH",
    "MAX_ITEMS",
    "TRUNCATED",
    "Snapshot",
    "capture_arguments",
    "freeze",
    "freeze_arguments",
    "render",
    "snapshot",
]

MAX_ITEMS = 100
MAX_DEPTH = 8
TRUNCATED = "…[truncated]"
_SCALARS = (int, bool, type(None))
"""Recorded as they are. Floats are not here: NaN and infinities are not JSON."""


def snapshot(value: Any, max_chars: int) -> tuple[Any, int]:
    """Return ``(json_safe_copy, approximate_size_in_bytes)`` of ``value``."""
    cls = type(value)
    if cls is str and len(value) <= max_chars:
        return value, len(value) + 2
    if cls in _SCALARS or (cls is float and isfinite(value)):
        return value, 8
    taker = Snapshot(max_chars)
    return taker.take(value, 0), taker.size


# A deferred value is a tuple tagged by its first item. Snapshots never contain tuples (they
# become lists), so a tuple in a record always means "render me later". Plain tuples cost a
# fraction of an object with an __init__, and this runs on every call.
_VALUE = object()
_ARGUMENTS = object()


def render(value: Any, max_chars: int) -> Any:
    """The JSON-safe form of a captured value: deferred ones are rendered, others are final."""
    if type(value) is not tuple:
        return value
    if value[0] is _ARGUMENTS:
        return capture_arguments(value[1], value[2], value[3], max_chars)[0]
    return Snapshot(max_chars).take(value[1], 0)


_IMMUTABLE = frozenset({str, int, float, bool, type(None)})


def freeze(value: Any, max_chars: int) -> tuple[Any, int]:
    """Make ``value`` safe from later mutation at the least cost; return it and its size.

    Plain scalars are kept; lists, tuples and str-keyed dicts of at most ``MAX_ITEMS`` plain
    scalars are copied shallowly and deferred (see :func:`render`); anything else is
    snapshotted now.
    """
    cls = type(value)
    if cls is str and len(value) <= max_chars:
        return value, len(value) + 2
    if cls is int or cls is bool or value is None:
        return value, 8
    if (cls is list or cls is tuple) and len(value) <= MAX_ITEMS:
        size = _flat_size(value, max_chars)
        if size is not None:
            return (_VALUE, tuple(value)), size
    elif cls is dict and len(value) <= MAX_ITEMS and all(type(key) is str for key in value):
        size = _flat_size(value.values(), max_chars)
        if size is not None:
            return (_VALUE, value.copy()), size + sum(map(len, value))
    return snapshot(value, max_chars)


def freeze_arguments(
    names: tuple[str, ...],
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any] | None,
    max_chars: int,
) -> tuple[Any, int]:
    """Like :func:`freeze` for a call's arguments; see :func:`capture_arguments` for the form."""
    size = _flat_size((*args, *kwargs.values()) if kwargs else args, max_chars)
    if size is None:
        return capture_arguments(names, args, kwargs, max_chars)
    return (_ARGUMENTS, names, args, kwargs), size + 16 * len(names)


def _flat_size(values: Collection[Any], max_chars: int) -> int | None:
    """The estimated encoded size of ``values`` if all are plain scalars, else None."""
    if not _IMMUTABLE.issuperset(map(type, values)):  # one C-level pass over the types
        return None
    size = 8 * len(values) + 2
    for value in values:
        if type(value) is str:
            size += len(value)
    return min(size, max_chars + 256)  # rendering truncates to about this


def capture_arguments(
    names: tuple[str, ...],
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any] | None,
    max_chars: int,
) -> tuple[dict[str, Any], int]:
    """Snapshot a call's arguments by parameter name, sharing one budget.

    ``names`` name the positional parameters; an empty name marks one not to record (``self``).
    Positional arguments past the named ones are recorded under ``"*args"``.
    """
    captured: dict[str, Any] = {}
    budget = max_chars
    size = 0
    taker: Snapshot | None = None
    named = len(names)
    pairs: Any = zip(names, args, strict=False) if len(args) <= named else _with_rest(names, args)
    for source in (pairs, kwargs.items() if kwargs else ()):
        for name, value in source:
            if not name:
                continue
            cls = type(value)
            # Immutable scalars and short strings are recorded as they are: the common case.
            if cls is str and len(value) <= budget:
                budget -= len(value)
                size += len(value) + 8
                captured[name] = value
            elif cls in _SCALARS or (cls is float and isfinite(value)):
                size += 12
                captured[name] = value
            else:
                if taker is None:
                    taker = Snapshot(budget)
                taker.budget = budget  # short strings taken above spent some of it
                captured[name] = taker.take(value, 1)
                budget = taker.budget
    return captured, size + (taker.size if taker is not None else 0)


def _with_rest(names: tuple[str, ...], args: tuple[Any, ...]) -> list[tuple[str, Any]]:
    pairs = list(zip(names, args, strict=False))
    pairs.append(("*args", args[len(names) :]))
    return pairs


class Snapshot:
    """One bounded walk over a value; ``size`` accumulates an estimate of the encoded bytes."""

    __slots__ = ("budget", "size")

    def __init__(self, max_chars: int) -> None:
        self.budget = max_chars
        self.size = 0

    def take(self, value: Any, depth: int) -> Any:
        """Copy ``value`` into JSON-safe form, spending this snapshot's budget."""
        cls = type(value)
        if cls is str:
            return self._text(value)
        if cls in _SCALARS:
            self.budget -= 1
            self.size += 8
            return value
        if cls is float:
            return self._float(value)
        if self.budget <= 0:
            return TRUNCATED
        if depth >= MAX_DEPTH:
            return self._text(f"<{cls.__qualname__}>")
        try:
            # Exact types first: an isinstance() against an ABC costs more than the whole copy.
            if cls is dict:
                return self._mapping(value, depth)
            if cls is list or cls is tuple:
                return self._sequence(value, depth)
            if isinstance(value, Mapping):
                return self._mapping(value, depth)
            if isinstance(value, list | tuple | set | frozenset):
                return self._sequence(value, depth)
            if isinstance(value, bytes | bytearray | memoryview):
                return self._text(f"<{cls.__name__} len={len(value)}>")
            if isinstance(value, str):  # a str subclass, such as an Enum mixing in str
                return self._text(str.__str__(value))
            if isinstance(value, int):
                self.budget -= 1
                self.size += 8
                return value
            if isinstance(value, float):
                return self._float(value)
            return self._object(value, depth)
        except Exception:  # a failing __str__, __iter__, model_dump...: never the agent's problem
            return self._text(f"<unrepresentable {cls.__qualname__}>")

    def _float(self, value: float) -> Any:
        self.budget -= 1
        self.size += 8
        return value if isfinite(value) else repr(float(value))

    def _text(self, text: str) -> str:
        if len(text) > self.budget:
            text = text[: max(self.budget, 0)] + TRUNCATED
            self.budget = 0
        else:
            self.budget -= len(text)
        self.size += len(text) + 2
        return text

    def _mapping(self, value: Mapping[Any, Any], depth: int) -> Any:
        self.budget -= 1
        out: dict[str, Any] = {}
        for index, (key, item) in enumerate(value.items()):
            if index >= MAX_ITEMS or self.budget <= 0:
                out[TRUNCATED] = len(value) - index
                break
            name = self._text(key if type(key) is str else str(key))
            out[name] = self.take(item, depth + 1)
        return out

    def _sequence(self, value: Any, depth: int) -> list[Any]:
        self.budget -= 1
        out: list[Any] = []
        for index, item in enumerate(value):
            if index >= MAX_ITEMS or self.budget <= 0:
                out.append(f"{TRUNCATED} {len(value) - index} more")
                break
            out.append(self.take(item, depth + 1))
        self.size += 2
        return out

    def _object(self, value: Any, depth: int) -> Any:
        if isinstance(value, type):  # a class, e.g. a pydantic model class: not its instance API
            return self._text(f"<class {value.__module__}.{value.__qualname__}>")
        dump = getattr(value, "model_dump", None)
        if callable(dump):
            return self.take(dump(), depth + 1)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            fields = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
            return self.take(fields, depth + 1)
        return self._text(repr(value))
