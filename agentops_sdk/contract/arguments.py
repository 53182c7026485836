"""Conditions on a call's arguments, as policy rules write them (``when:``), compiled to
closures; and the canonical form of arguments that an approval request binds to.

A condition's ``argument`` is a dotted path into the arguments: mapping keys, list indexes,
attributes of other objects (never private ones). The tests' semantics (absent values, lists,
values a test cannot read) are documented on
:class:`~agentops_sdk.contract.policy.ArgumentTest` and in docs/policies.md. Pure: the
standard library, and the compiled regexes of :mod:`agentops_sdk.contract.patterns`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import operator
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

from agentops_sdk.contract.patterns import Regex, compile_regex
from agentops_sdk.contract.policy import AllOf, AnyOf, ArgumentTest, Condition, Range

__all__ = ["Check", "canonical_arguments", "compile_conditions"]

Check = Callable[[Mapping[str, Any]], bool]
"""A compiled condition: does it hold for these arguments?"""


def compile_conditions(conditions: Sequence[Condition]) -> Check | None:
    """One check that holds when all ``conditions`` do; None for no conditions."""
    return _all_of([_condition(condition) for condition in conditions])


def canonical_arguments(arguments: Mapping[str, Any]) -> tuple[str, str] | None:
    """The arguments as canonical JSON (sorted keys, no spaces) and its SHA-256 hex digest:
    what an approval request freezes and binds to. None when a value has no JSON form (such
    arguments can never be approved)."""
    try:
        text = json.dumps(
            _jsonable(arguments),
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=False,
            allow_nan=False,
        )
    except (TypeError, ValueError):
        return None
    return text, hashlib.sha256(text.encode()).hexdigest()


_ABSENT: Final = object()
"""An argument that is not there (or null)."""

Test = Callable[[Any], bool]


def _all_of(checks: list[Check]) -> Check | None:
    if not checks:
        return None
    if len(checks) == 1:
        return checks[0]
    return lambda arguments: all(check(arguments) for check in checks)


def _condition(condition: Condition) -> Check:
    if isinstance(condition, AnyOf):
        checks = [_condition(inner) for inner in condition.any]
        return lambda arguments: any(check(arguments) for check in checks)
    if isinstance(condition, AllOf):
        combined = _all_of([_condition(inner) for inner in condition.all])
        assert combined is not None  # AllOf holds at least one condition
        return combined
    return _argument_check(condition)


def _argument_check(condition: ArgumentTest) -> Check:
    path = tuple(condition.argument.split("."))
    tests = [_TESTS[name](operand) for name, operand in condition.tests()]
    if len(path) == 1:
        key = path[0]

        def lookup(arguments: Mapping[str, Any]) -> Any:
            value = arguments.get(key, _ABSENT)
            return _ABSENT if value is None else value

    else:

        def lookup(arguments: Mapping[str, Any]) -> Any:
            return _resolve(arguments, path)

    if len(tests) == 1:
        test = tests[0]
        return lambda arguments: test(lookup(arguments))

    def check(arguments: Mapping[str, Any]) -> bool:
        value = lookup(arguments)
        return all(test(value) for test in tests)

    return check


def _resolve(arguments: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    """The value at ``path`` (keys, list indexes, attributes of objects); ``_ABSENT`` if
    there is none."""
    value: Any = arguments
    for part in path:
        if isinstance(value, Mapping):
            value = value.get(part, _ABSENT)
        elif isinstance(value, list | tuple):
            value = value[int(part)] if part.isdigit() and int(part) < len(value) else _ABSENT
        elif isinstance(value, str | bytes | int | float) or part.startswith("_"):
            return _ABSENT
        else:
            value = getattr(value, part, _ABSENT)
        if value is _ABSENT or value is None:
            return _ABSENT
    return value


def _items(value: Any) -> bool:
    return isinstance(value, list | tuple)


def _each(one: Test, *, absent: bool) -> Test:
    """The test of an argument by ``one``: ``absent`` when the call lacks it, true for a list
    when ``one`` holds for any of its items, else ``one`` of the value."""

    def test(value: Any) -> bool:
        if value is _ABSENT:
            return absent
        if _items(value):
            return any(one(item) for item in value)
        return one(value)

    return test


def _exists(expected: Any) -> Test:
    return lambda value: (value is not _ABSENT) is bool(expected)


def _equals(expected: Any) -> Test:
    if expected is None:
        return lambda value: value is _ABSENT
    return lambda value: value is not _ABSENT and _same(value, expected)


def _not_equals(expected: Any) -> Test:
    equals = _equals(expected)
    return lambda value: not equals(value)


def _in(members: Sequence[Any]) -> Test:
    def one(value: Any) -> bool:
        return any(_same(value, member) for member in members)

    return _each(one, absent=False)


def _not_in(members: Sequence[Any]) -> Test:
    def one(value: Any) -> bool:
        return not any(_same(value, member) for member in members)

    return _each(one, absent=True)


def _regex(pattern: str) -> Test:
    compiled = compile_regex(pattern)

    def one(value: Any) -> bool:
        found = _search(compiled, value)
        return True if found is None else found

    return _each(one, absent=False)


def _not_regex(pattern: str) -> Test:
    compiled = compile_regex(pattern)

    def one(value: Any) -> bool:
        found = _search(compiled, value)
        return True if found is None else not found

    return _each(one, absent=True)


def _search(compiled: Regex, value: Any) -> bool | None:
    """Search a string, or the JSON text of any other value; None: it cannot be tested."""
    return compiled.search(value if isinstance(value, str) else _text(value))


def _text(value: Any) -> str:
    try:
        return json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        return str(value)


def _bound(compare: Callable[[Any, Any], bool]) -> Callable[[float], Test]:
    def make(limit: float) -> Test:
        def one(value: Any) -> bool:
            number = _number(value)
            return True if number is None else compare(number, limit)

        return _each(one, absent=False)

    return make


def _length(bounds: Range) -> Test:
    within = _within(bounds)

    def test(value: Any) -> bool:
        if value is _ABSENT:
            return False
        if isinstance(value, str | list | tuple | Mapping | set | frozenset):
            return within(len(value))
        return True  # no length to read

    return test


def _within(bounds: Range) -> Callable[[float], bool]:
    checks = [
        (compare, limit)
        for compare, limit in (
            (operator.gt, bounds.gt),
            (operator.ge, bounds.ge),
            (operator.lt, bounds.lt),
            (operator.le, bounds.le),
        )
        if limit is not None
    ]
    return lambda number: all(compare(number, limit) for compare, limit in checks)


def _number(value: Any) -> int | float | None:
    """``value`` as a number: ints and finite floats, and strings that spell one; else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return None if math.isnan(value) else value
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return None
        return None if math.isnan(number) else number
    return None


def _same(a: Any, b: Any) -> bool:
    """JSON equality: ``True`` is not ``1``, a tuple equals the list of the same items."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if _items(a) and _items(b):
        return len(a) == len(b) and all(map(_same, a, b))
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(_same(a[key], b[key]) for key in a)
    try:
        return bool(a == b)
    except Exception:  # a value whose __eq__ fails is no member of anything
        return False


_TESTS: Final[dict[str, Callable[[Any], Test]]] = {
    "exists": _exists,
    "equals": _equals,
    "not_equals": _not_equals,
    "in": _in,
    "not_in": _not_in,
    "regex": _regex,
    "not_regex": _not_regex,
    "gt": _bound(operator.gt),
    "ge": _bound(operator.ge),
    "lt": _bound(operator.lt),
    "le": _bound(operator.le),
    "length": _length,
}


def _jsonable(value: Any) -> Any:
    """``value`` with tuples as lists, models and dataclasses as their fields; TypeError for
    what has no JSON form."""
    if value is None or isinstance(value, str | bool | int | float):
        return value
    if isinstance(value, Mapping):
        if not all(isinstance(key, str) for key in value):
            raise TypeError("argument keys must be strings")
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(item) for item in value]
    dump = getattr(value, "model_dump", None)
    if callable(dump):  # a pydantic model
        return _jsonable(dump(mode="json"))
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _jsonable(dataclasses.asdict(value))
    raise TypeError(f"{type(value).__name__} has no JSON form")
