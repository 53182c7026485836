"""The disk spool on its own: files named with their event counts, claims of several batches as
one request, release and delivery, a bound in bytes, and batches another process spooled.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from agentops_sdk.exporters import ExportBatch, encode
from agentops_sdk.ids import format_id, new_id
from agentops_sdk.spool import Spool


def batch_of(count: int, tag: str = "e") -> ExportBatch:
    events = [{"type": "span", "id": f"{tag}-{i}", "name": "tool"} for i in range(count)]
    return ExportBatch(format_id(new_id()), events, [encode(event) for event in events])


def sent_ids(batch: ExportBatch) -> list[str]:
    """The event ids a hub would read from the batch's payload."""
    return [event["id"] for event in json.loads(batch.payload)["events"]]


def test_a_written_batch_is_counted_in_events_and_bytes(tmp_path: Path) -> None:
    spool = Spool(tmp_path, "key", 10_000_000)
    written = batch_of(5)

    assert spool.write(written)

    (path,) = (tmp_path / "key").iterdir()
    assert path.name == f"{written.batch_id}.5.json"
    assert spool.pending() == 1
    assert spool.pending_events() == (5, path.stat().st_size)


def test_a_claim_takes_the_oldest_batches_that_fit_as_one_batch(tmp_path: Path) -> None:
    spool = Spool(tmp_path, "key", 10_000_000)
    first, second, third = batch_of(100, "a"), batch_of(100, "b"), batch_of(100, "c")
    for written in (first, second, third):
        spool.write(written)

    claim = spool.claim(max_events=250, max_bytes=10_000_000)

    assert claim is not None
    assert len(claim.batch) == 200
    assert sent_ids(claim.batch) == sent_ids(first) + sent_ids(second)
    assert spool.pending_events()[0] == 100, "the third stays for the next claim"


def test_one_batch_is_claimed_even_when_it_alone_passes_the_limits(tmp_path: Path) -> None:
    spool = Spool(tmp_path, "key", 10_000_000)
    spool.write(batch_of(300))

    claim = spool.claim(max_events=100, max_bytes=10)

    assert claim is not None
    assert len(claim.batch) == 300


def test_a_released_claim_is_claimed_again_first_and_a_done_one_is_gone(tmp_path: Path) -> None:
    spool = Spool(tmp_path, "key", 10_000_000)
    older, newer = batch_of(3, "old"), batch_of(3, "new")
    spool.write(older)
    spool.write(newer)

    claim = spool.claim(max_events=3, max_bytes=10_000_000)
    assert claim is not None
    spool.release(claim)
    again = spool.claim(max_events=3, max_bytes=10_000_000)
    assert again is not None
    assert sent_ids(again.batch) == sent_ids(older)

    spool.done(again)
    assert spool.pending_events()[0] == 3
    assert len(list((tmp_path / "key").iterdir())) == 1


def test_a_full_spool_refuses_the_batch_and_says_so_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="agentops_sdk")
    first = batch_of(10)
    spool = Spool(tmp_path, "key", len(first.payload) + 10)

    assert spool.write(first)
    assert not spool.write(batch_of(10))
    assert not spool.write(batch_of(10))

    assert sum("is full" in record.getMessage() for record in caplog.records) == 1
    assert spool.pending() == 1


def test_batches_another_process_spooled_are_found_and_sent(tmp_path: Path) -> None:
    ours = Spool(tmp_path, "key", 10_000_000)
    theirs = Spool(tmp_path, "key", 10_000_000)
    written = batch_of(4)
    theirs.write(written)

    claim = ours.claim(max_events=1000, max_bytes=10_000_000)

    assert claim is not None, "an empty index looks at the folder again"
    assert sent_ids(claim.batch) == sent_ids(written)


def test_a_batch_spooled_by_an_older_sdk_without_a_count_in_its_name_is_sent_whole(
    tmp_path: Path,
) -> None:
    written = batch_of(7)
    folder = tmp_path / "key"
    folder.mkdir()
    (folder / f"{written.batch_id}.json").write_bytes(written.payload)
    spool = Spool(tmp_path, "key", 10_000_000)

    claim = spool.claim(max_events=1000, max_bytes=10_000_000)

    assert claim is not None
    assert len(claim.batch) == 7
    assert sent_ids(claim.batch) == sent_ids(written)
