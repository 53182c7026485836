"""Ids: UUIDv7, unique, ordered by creation time, stable once derived."""

from __future__ import annotations

import threading
import time
import uuid

from hypothesis import given
from hypothesis import strategies as st

from agentops_sdk.ids import derive_id, format_id, new_id, parse_id


def test_ids_are_version_7_rfc_variant_uuids() -> None:
    parsed = uuid.UUID(format_id(new_id()))
    assert parsed.version == 7
    assert parsed.variant == uuid.RFC_4122


def test_ids_carry_their_creation_time_in_milliseconds() -> None:
    before = time.time_ns() // 1_000_000
    value = new_id()
    after = time.time_ns() // 1_000_000
    assert before <= value >> 80 <= after


def test_ids_made_one_after_another_sort_in_creation_order() -> None:
    ids = []
    for _ in range(2000):
        ids.append(new_id())
        time.sleep(0)  # let the clock move on between some of them
    timestamps = [value >> 64 for value in ids]  # milliseconds and sub-millisecond bits
    assert timestamps == sorted(timestamps)


def test_ids_made_concurrently_never_collide() -> None:
    made: list[int] = []

    def make() -> None:
        made.extend(new_id() for _ in range(5000))

    threads = [threading.Thread(target=make) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(made)) == len(made) == 20000


@given(st.integers(0, 2**62), st.integers(0, 2**40))
def test_deriving_is_deterministic_so_racing_threads_agree(start_ns: int, sequence: int) -> None:
    assert derive_id(start_ns, sequence) == derive_id(start_ns, sequence)
    assert derive_id(start_ns, sequence) != derive_id(start_ns, sequence + 1)


@given(st.integers(0, 2**128 - 1))
def test_format_and_parse_round_trip(value: int) -> None:
    text = format_id(value)
    assert str(uuid.UUID(text)) == text
    assert parse_id(text) == value


def test_an_id_made_before_a_fork_is_the_same_in_parent_and_child() -> None:
    import os

    from agentops_sdk.spans import Run

    run = Run(
        agent="a", name="a", environment="test", tags=(), metadata=None,
        start_ns=time.time_ns(), max_chars=10,
    )  # fmt: skip
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: derive the id (first use) and report it
        os.write(write, format_id(run.id).encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    from_child = os.read(read, 100).decode()
    assert from_child == format_id(run.id)
