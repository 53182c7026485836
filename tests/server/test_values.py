"""The kinds of value the hub accepts (``agentops_server.values``), each checked by one rule:
names, free text, moments, JSON depth."""

from __future__ import annotations

import datetime as dt
import re

import msgspec
import pytest

from agentops_server.refusals import Invalid
from agentops_server.values import MAX_JSON_DEPTH, Name, Text, Timestamp, decode_json


@pytest.mark.parametrize(
    ("value", "kept"),
    [("  Ada  Lovelace ", "Ada  Lovelace"), ("Zoë 🚀", "Zoë 🚀"), ("", "")],
)
def test_a_name_drops_surrounding_space_and_keeps_the_rest(value: str, kept: str) -> None:
    assert Name(value) == kept


@pytest.mark.parametrize(
    "value",
    ["a\x00b", "a\nb", "a\tb", "a\x7fb", "a\x9bb", "\ud800", "x" * 201],
    ids=["nul", "newline", "tab", "del", "c1", "lone-surrogate", "too-long"],
)
def test_a_name_refuses_control_characters_and_lengths_over_200(value: str) -> None:
    with pytest.raises(Invalid) as refused:
        Name(value)

    assert refused.value.code == "invalid_name"


@pytest.mark.parametrize("value", ["line one\nline two", "tab\tseparated", "crlf\r\n", "é€😀"])
def test_text_keeps_tabs_newlines_and_any_character_a_database_stores(value: str) -> None:
    assert Text(value) == value


@pytest.mark.parametrize(
    "value",
    ["a\x00", "\x01", "\x1b[31m", "\x7f", "\udfff", "x" * 4097],
    ids=["nul", "soh", "escape", "del", "lone-surrogate", "too-long"],
)
def test_text_refuses_nul_other_control_characters_and_lengths_over_4096(value: str) -> None:
    with pytest.raises(Invalid) as refused:
        Text(value)

    assert refused.value.code == "invalid_text"


def test_the_schema_pattern_of_a_kind_is_its_check() -> None:
    for kind, good, bad in ((Text, "a\nb", "a\x00b"), (Name, "Ada", "a\nb")):
        assert re.fullmatch(kind.pattern(), good)
        assert not re.fullmatch(kind.pattern(), bad)


@pytest.mark.parametrize(
    ("value", "utc"),
    [
        ("2026-03-01T12:00:00", dt.datetime(2026, 3, 1, 12, tzinfo=dt.UTC)),
        ("2026-03-01T12:00:00Z", dt.datetime(2026, 3, 1, 12, tzinfo=dt.UTC)),
        ("2026-03-01T12:00:00+02:00", dt.datetime(2026, 3, 1, 10, tzinfo=dt.UTC)),
        ("9999-12-31T23:59:59Z", dt.datetime(9999, 12, 31, 23, 59, 59, tzinfo=dt.UTC)),
    ],
)
def test_a_timestamp_is_an_aware_utc_moment_naive_meaning_utc(value: str, utc: dt.datetime) -> None:
    moment = Timestamp.parse(value)

    assert moment == utc
    assert moment.tzinfo == dt.UTC


@pytest.mark.parametrize(
    "value",
    [
        "9999-12-31T23:59:59-14:00",
        "0001-01-01T00:00:00+14:00",
        "yesterday",
        "2026-13-45T00:00:00",
        7,
    ],
)
def test_a_timestamp_refuses_what_is_no_moment_in_utc(value: object) -> None:
    with pytest.raises(Invalid) as refused:
        Timestamp.parse(value)

    assert refused.value.code == "invalid_timestamp"


def test_json_nested_as_deep_as_allowed_is_decoded() -> None:
    document = b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH

    decoded = decode_json(document)

    depth = 0
    while decoded:
        decoded = decoded[0]
        depth += 1
    assert depth == MAX_JSON_DEPTH - 1  # the innermost array is empty


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 1_000, 10_000, 200_000])
def test_json_nested_deeper_is_refused_however_deep(depth: int) -> None:
    with pytest.raises(Invalid) as refused:
        decode_json(b'{"a":' * depth + b"1" + b"}" * depth)

    assert refused.value.code == "json_too_deep"


def test_json_that_is_not_json_is_a_decode_error() -> None:
    with pytest.raises(msgspec.DecodeError):
        decode_json(b"{not json")
