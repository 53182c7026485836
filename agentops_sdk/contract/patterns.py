"""Name globs and argument regexes for policy rules, compiled once and safe to run on any input.

Globs (``delete_*``, ``gpt-4o*``) follow :func:`fnmatch.fnmatchcase`: ``*``, ``?``, ``[seq]``,
case-sensitive.

Regexes use the part of the syntax that Python's ``re`` and RE2 share, with RE2's ASCII
character classes, so a pattern means the same in the hub and in every SDK, whether or not
``google-re2`` is installed. A regex written by a policy author runs on text an agent (or the
model behind it) chose, so it must not be able to hang the agent:

- :func:`regex_problem` refuses what could backtrack exponentially (a repeated group holding a
  repeat or an alternation: ``(a+)+``, ``(a|ab)*``), backreferences, lookarounds, and
  repetition counts over 1,000 (as RE2 does);
- what is left can still backtrack polynomially: each unbounded repeat (``*``, ``+``, ``{n,}``)
  raises the degree. :class:`Regex` runs Python's ``re`` only on texts short enough for that
  degree to stay within about a millisecond; a longer text goes to RE2 (linear time) when
  ``google-re2`` is installed (``pip install 'agentops-hub[policy]'``), and otherwise cannot be
  tested: :meth:`Regex.search` returns None, and the rule treats that as a match of its
  condition (a rule never lets a call through because its text was too long to check).

Python's ``re`` runs first because it is faster on short texts: RE2's Python binding costs
about 2 us a search, ``re`` well under 1 us.
"""

from __future__ import annotations

import fnmatch
import importlib
import re
from collections.abc import Callable
from typing import Any, Final

__all__ = [
    "MAX_PATTERN_CHARS",
    "MAX_REPEAT_COUNT",
    "Regex",
    "compile_glob",
    "compile_regex",
    "is_glob",
    "re2_available",
    "regex_problem",
]

MAX_PATTERN_CHARS: Final = 1000
MAX_REPEAT_COUNT: Final = 1000
"""The largest ``{n,m}`` count RE2 accepts."""

_NESTED_MAX: Final = 8
"""A repeated group may hold repeats or alternatives only if it repeats at most this often."""
_WIDE: Final = 64
"""A repeat allowing more than this many copies counts as unbounded for the degree."""
_MAX_TEXT: Final = 100_000
"""The longest text Python's ``re`` is given, whatever the pattern."""
_STEPS: Final = 1_000_000
"""Backtracking steps allowed to one search (about a millisecond): a pattern of degree ``d``
backtracks ``len(text) ** d`` steps at worst, so it gets texts up to ``_STEPS ** (1 / d)``."""

_GLOB_CHARS = frozenset("*?[")


def is_glob(pattern: str) -> bool:
    """Whether ``pattern`` has glob characters (else it matches only itself)."""
    return not _GLOB_CHARS.isdisjoint(pattern)


def compile_glob(pattern: str) -> Callable[[str], bool]:
    """A test for names matching ``pattern``: equality when it has no glob characters."""
    if not is_glob(pattern):
        return pattern.__eq__
    match = re.compile(fnmatch.translate(pattern)).match
    return lambda name: match(name) is not None


def regex_problem(pattern: str) -> str | None:
    """What makes ``pattern`` unfit for a policy rule; None when it is fit."""
    if len(pattern) > MAX_PATTERN_CHARS:
        return f"a regex has at most {MAX_PATTERN_CHARS} characters"
    try:
        parsed = _parse(pattern)
    except re.error as exc:
        return f"not a valid regex: {exc}"
    if parsed.state.flags & (re.VERBOSE | re.LOCALE):
        return "the x and L flags are not supported (only i, m and s)"
    try:
        _degree(list(parsed))
    except _Unfit as exc:
        return str(exc)
    return None


def compile_regex(pattern: str) -> Regex:
    """Compile a pattern that :func:`regex_problem` accepts (ValueError otherwise)."""
    problem = regex_problem(pattern)
    if problem is not None:
        raise ValueError(problem)
    return Regex(pattern)


def re2_available() -> bool:
    """Whether ``google-re2`` is installed (long texts are then tested in linear time)."""
    return _re2_module() is not None


class Regex:
    """A compiled policy regex. ``search`` answers True, False, or None: not testable."""

    __slots__ = ("_fallback", "_search", "max_text", "pattern")

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        self._search = re.compile(pattern, re.ASCII).search
        self.max_text = min(_MAX_TEXT, int(_STEPS ** (1 / _search_degree(pattern))))
        """The longest text Python's ``re`` tests; longer ones need RE2."""
        self._fallback = _re2_search(pattern)

    def search(self, text: str) -> bool | None:
        """Whether ``pattern`` matches somewhere in ``text``; None if the text is too long to
        test safely without RE2."""
        if len(text) <= self.max_text:
            return self._search(text) is not None
        if self._fallback is None:
            return None
        return self._fallback(text) is not None

    def __repr__(self) -> str:
        return f"Regex({self.pattern!r})"


class _Unfit(ValueError):
    pass


def _search_degree(pattern: str) -> int:
    """The polynomial degree of a search's worst case: one per unbounded repeat, plus one for
    the start positions a search tries, unless the pattern is anchored at the start."""
    c = _sre_constants()

    items = list(_parse(pattern))
    anchored = bool(items) and items[0] == (c.AT, c.AT_BEGINNING)
    return max(1, _degree(items) + (0 if anchored else 1))


def _sre_constants() -> Any:
    """``re``'s private opcode constants (private: typeshed may or may not describe them)."""
    return importlib.import_module("re._constants")


def _parse(pattern: str) -> Any:
    parser: Any = importlib.import_module("re._parser")  # the parser ``re`` itself uses
    return parser.parse(pattern, re.ASCII)


def _degree(items: list[Any]) -> int:
    """How many unbounded repeats ``items`` holds; raises :class:`_Unfit` for what could
    backtrack exponentially or that RE2 would not accept."""
    c = _sre_constants()

    unbounded = 0
    for op, value in items:
        if op in (c.MAX_REPEAT, c.MIN_REPEAT):
            low, high, body = value
            bounded = high is not c.MAXREPEAT
            if (bounded and high > MAX_REPEAT_COUNT) or low > MAX_REPEAT_COUNT:
                raise _Unfit(f"a repetition count is at most {MAX_REPEAT_COUNT}")
            if (
                high > 1
                and _nests(list(body))
                and not (bounded and high <= _NESTED_MAX and _narrow(list(body)))
            ):
                raise _Unfit(
                    "a repeated group may not hold another repeat or alternatives (matching "
                    "could take exponential time): repeat a character class instead, or "
                    f"repeat the group at most {_NESTED_MAX} times with short repeats inside"
                )
            unbounded += _degree(list(body)) + (1 if not bounded or high > _WIDE else 0)
        elif op is c.SUBPATTERN:
            add_flags, body = value[1], value[3]
            if add_flags & (re.VERBOSE | re.LOCALE):
                raise _Unfit("the x and L flags are not supported (only i, m and s)")
            unbounded += _degree(list(body))
        elif op is c.BRANCH:
            unbounded += sum(_degree(list(branch)) for branch in value[1])
        elif op in (c.GROUPREF, c.GROUPREF_EXISTS):
            raise _Unfit("backreferences are not supported (RE2 syntax)")
        elif op in (c.ASSERT, c.ASSERT_NOT):
            raise _Unfit("lookahead and lookbehind are not supported (RE2 syntax)")
        elif op in (c.ATOMIC_GROUP, c.POSSESSIVE_REPEAT):
            raise _Unfit("atomic groups and possessive repeats are not supported (RE2 syntax)")
    return unbounded


def _nests(items: list[Any]) -> bool:
    """Whether ``items`` hold a repeat of more than one copy, or alternatives."""
    c = _sre_constants()

    for op, value in items:
        if op in (c.MAX_REPEAT, c.MIN_REPEAT) and (value[1] > 1 or _nests(list(value[2]))):
            return True
        if op is c.BRANCH or (op is c.SUBPATTERN and _nests(list(value[3]))):
            return True
    return False


def _narrow(items: list[Any]) -> bool:
    """Whether every repeat in ``items`` allows at most a few copies of something that does
    not nest again (what a repeated group may hold: ``(\\d{1,3}\\.){3}``)."""
    c = _sre_constants()

    for op, value in items:
        if op in (c.MAX_REPEAT, c.MIN_REPEAT):
            if value[1] > _NESTED_MAX or _nests(list(value[2])):
                return False
        elif (op is c.SUBPATTERN and not _narrow(list(value[3]))) or (
            op is c.BRANCH and not all(_narrow(list(branch)) for branch in value[1])
        ):
            return False
    return True


_re2: Any = None
_re2_loaded = False


def _re2_module() -> Any:
    global _re2, _re2_loaded
    if not _re2_loaded:
        try:
            _re2 = importlib.import_module("re2")
        except ImportError:
            _re2 = None
        _re2_loaded = True
    return _re2


def _re2_search(pattern: str) -> Callable[[str], Any] | None:
    """RE2's search for ``pattern``; None without ``google-re2``, or for the few patterns RE2
    spells differently (``\\Z``): those stay bounded to short texts."""
    module = _re2_module()
    if module is None:
        return None
    options = module.Options()
    options.log_errors = False  # a refused pattern is not an error here: it stays on ``re``
    try:
        compiled = module.compile(pattern, options)
    except module.error:
        return None
    search: Callable[[str], Any] = compiled.search
    return search
