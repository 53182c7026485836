"""``GET /api/v1/stream``: the org's live updates over a real HTTP server (uvicorn), read with
httpx-sse and with the SDK's own ``HubStream``, fanned out in the process and over Redis, and
brought by the version watch when the database changes outside the hub."""

from __future__ import annotations

import dataclasses
import json
import re
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Generator, Iterator
from datetime import UTC, datetime
from urllib.parse import urlsplit

import pytest
from litestar import Litestar

from agentops_sdk.contract.controls import ControlSet
from agentops_sdk.enforcement.hub_stream import HubStream
from agentops_sdk.enforcement.link import EMPTY
from agentops_server import Settings, create_app
from agentops_server.backends.live import format_cursor, parse_cursor
from agentops_server.services.identity.api_keys import IssuedKey
from tests.server.conftest import make_org
from tests.server.servers import serving
from tests.server.streams import (
    VERSIONS_TABLE,
    MemoryTopic,
    database_topic,
    last_of,
    listening,
    live_of,
    make_versions_table,
    on_hub_loop,
)

SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
REDIS_URL = "redis://127.0.0.1:6379/0"


def stream_settings(settings: Settings, **changes: object) -> Settings:
    values: dict[str, object] = {
        "stream_heartbeat": 0.3,
        "stream_max_age": 60.0,
        "stream_watch_interval": 0.05,
        "log_level": "WARNING",
    }
    return dataclasses.replace(settings, **{**values, **changes})  # type: ignore[arg-type]


@pytest.fixture
def probe() -> MemoryTopic:
    return MemoryTopic()


@pytest.fixture
def hub(settings: Settings, probe: MemoryTopic) -> Iterator[tuple[str, Litestar]]:
    app = create_app(stream_settings(settings), stream_topics=[probe.topic])
    with serving(app) as url:
        yield url, app


@SQLITE_ONLY
def test_a_new_stream_starts_with_each_topics_snapshot_under_a_cursor(
    hub: tuple[str, Litestar], org: IssuedKey
) -> None:
    with listening(hub[0], org.key) as stream:
        first = stream.wait_for(lambda events: events[0] if events else None, "first event")
    assert stream.status == 200
    assert (first.event, first.id) == ("probe", "probe:1")
    assert json.loads(first.data) == {"org": str(org.org_id), "v": 1}


@SQLITE_ONLY
def test_a_refresh_reaches_every_stream_of_its_org_and_none_of_another(
    hub: tuple[str, Litestar], org: IssuedKey, migrated_url: str, probe: MemoryTopic
) -> None:
    other = make_org(migrated_url, "globex")
    url, app = hub
    with (
        listening(url, org.key) as mine,
        listening(url, org.key) as also_mine,
        listening(url, other.key) as theirs,
    ):
        for stream in (mine, also_mine, theirs):
            stream.wait_for(last_of("probe"), "snapshot")
        probe.bump(org.org_id)
        on_hub_loop(probe, live_of(app).refresh(org.org_id, "probe"))

        for stream in (mine, also_mine):
            event = stream.wait_for(
                lambda events: [e for e in events if e.id == "probe:2"], "version 2"
            )[0]
            assert json.loads(event.data) == {"org": str(org.org_id), "v": 2}
        theirs.wait_for(lambda events: len(events) >= 3, "heartbeats")  # it went on, quietly
        assert [e.data for e in theirs.events if e.event == "probe"] == [
            json.dumps({"org": str(other.org_id), "v": 1})
        ]


@SQLITE_ONLY
def test_resuming_with_the_last_event_id_sends_only_what_the_client_lacks(
    hub: tuple[str, Litestar], org: IssuedKey, probe: MemoryTopic
) -> None:
    url, _ = hub
    with listening(url, org.key, last_event_id="probe:1") as current:
        heartbeat = current.wait_for(last_of("heartbeat"), "heartbeat")
    assert [e.event for e in current.events if e.event != "heartbeat"] == []
    assert heartbeat.id == "probe:1"

    probe.bump(org.org_id)
    with listening(url, org.key, last_event_id="probe:1") as behind:
        assert behind.wait_for(last_of("probe"), "the newer version").id == "probe:2"
    with listening(url, org.key, last_event_id="made-up") as stranger:
        assert stranger.wait_for(last_of("probe"), "the snapshot").id == "probe:2"


@SQLITE_ONLY
def test_a_quiet_stream_sends_heartbeats_carrying_the_latest_id(
    hub: tuple[str, Litestar], org: IssuedKey
) -> None:
    with listening(hub[0], org.key) as stream:
        stream.wait_for(lambda events: len(events) >= 3, "two heartbeats")
    assert stream.kinds()[:3] == [
        ("probe", "probe:1"),
        ("heartbeat", "probe:1"),
        ("heartbeat", "probe:1"),
    ]


@SQLITE_ONLY
def test_a_stream_ends_after_its_maximum_age(
    settings: Settings, org: IssuedKey, probe: MemoryTopic
) -> None:
    app = create_app(stream_settings(settings, stream_max_age=0.5), stream_topics=[probe.topic])
    with serving(app) as url, listening(url, org.key) as stream:
        stream.wait_ended()
    assert stream.kinds()[0] == ("probe", "probe:1")


@SQLITE_ONLY
def test_a_client_that_falls_behind_is_sent_resync_and_dropped(
    settings: Settings, org: IssuedKey
) -> None:
    big = MemoryTopic(
        render=lambda org_id, version: json.dumps({"v": version, "pad": "x" * 200_000})
    )
    app = create_app(stream_settings(settings, stream_backlog=2), stream_topics=[big.topic])
    with serving(app) as url, listening(url, org.key) as reader:
        reader.wait_for(last_of("probe"), "snapshot")
        slow = _unread_stream(url, org.key)
        live = live_of(app)
        assert _wait(lambda: len(live.backlogs) == 2)
        for _ in range(60):  # at the pace of the reader, which keeps up and gets every one
            version = f"probe:{big.bump(org.org_id)}"
            on_hub_loop(big, live.refresh(org.org_id, "probe"))
            reader.wait_for(lambda events: any(e.id == version for e in events), version)  # noqa: B023
            assert max(live.backlogs) <= 2  # the hub holds at most the backlog
        assert [e.event for e in reader.events].count("resync") == 0
        received = _drain(slow)
    kinds = re.findall(r"^event: (\w+)$", received, re.MULTILINE)
    assert kinds[-1] == "resync"
    assert kinds.count("probe") < 61


@SQLITE_ONLY
def test_a_refresh_that_fails_never_raises_and_the_watch_brings_the_change_later(
    hub: tuple[str, Litestar], org: IssuedKey, probe: MemoryTopic
) -> None:
    url, app = hub
    with listening(url, org.key) as stream:
        stream.wait_for(last_of("probe"), "snapshot")
        probe.broken = True
        probe.bump(org.org_id)
        on_hub_loop(probe, live_of(app).refresh(org.org_id, "probe"))  # returns, logged
        probe.broken = False
        assert stream.wait_for(lambda es: [e for e in es if e.id == "probe:2"], "version 2")


@pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
def test_the_version_watch_brings_a_change_made_outside_the_hub(
    settings: Settings, org: IssuedKey, migrated_url: str
) -> None:
    make_versions_table(migrated_url)
    app = create_app(stream_settings(settings), stream_topics=[database_topic()])
    with serving(app) as url, listening(url, org.key) as stream:
        assert stream.wait_for(last_of("probe"), "snapshot").id == "probe:0"
        _set_version_elsewhere(migrated_url, org.org_id, 5)
        event = stream.wait_for(lambda es: [e for e in es if e.id == "probe:5"], "version 5")[0]
    assert json.loads(event.data)["v"] == 5


def test_a_refresh_on_one_hub_reaches_a_stream_on_another_over_redis(
    settings: Settings, org: IssuedKey
) -> None:
    probe = MemoryTopic()  # both hubs read one store: only Redis can carry the refresh
    quiet = stream_settings(settings, redis_url=REDIS_URL, stream_watch_interval=3600.0)
    one = create_app(quiet, stream_topics=[probe.topic])
    other = create_app(quiet, stream_topics=[probe.topic])
    with serving(one) as one_url, serving(other) as other_url:
        with listening(one_url, org.key) as first:
            first.wait_for(last_of("probe"), "snapshot")
            one_loop = probe.loop
        with listening(other_url, org.key) as stream:
            stream.wait_for(last_of("probe"), "snapshot")
            probe.bump(org.org_id)
            probe.loop = one_loop
            on_hub_loop(probe, live_of(one).refresh(org.org_id, "probe"))
            event = stream.wait_for(lambda es: [e for e in es if e.id == "probe:2"], "v2")[0]
    assert json.loads(event.data)["v"] == 2


@SQLITE_ONLY
def test_the_sdk_hub_stream_takes_the_controls_the_hub_pushes(
    settings: Settings, org: IssuedKey
) -> None:
    controls = MemoryTopic(
        "controls",
        render=lambda org_id, version: ControlSet(
            org_id=org_id, version=version, generated_at=datetime.now(UTC)
        ).model_dump_json(),
    )
    app = create_app(stream_settings(settings), stream_topics=[controls.topic])
    with serving(app) as url:
        source = HubStream(url, org.key, poll_interval=3600)
        stop = threading.Event()
        updates = source.updates(frozenset({"controls"}), EMPTY, stop)
        assert isinstance(updates, Generator)
        try:
            first = next(updates)
            assert (first.via, first.value.version) == ("stream", 1)
            controls.bump(org.org_id)
            on_hub_loop(controls, live_of(app).refresh(org.org_id, "controls"))
            newer = next(u for u in updates if u.value.version == 2)
            assert newer.via == "stream"
            assert source._last_event_id == "controls:2"
        finally:
            stop.set()
            source.interrupt()
            updates.close()


def test_cursors_hold_every_topics_version_and_ignore_what_the_hub_did_not_make() -> None:
    assert format_cursor({"probe": 3, "controls": 7}) == "controls:7,probe:3"
    assert parse_cursor("controls:7,probe:3") == {"controls": 7, "probe": 3}
    assert parse_cursor("42") == {}
    assert parse_cursor(None) == {}


# -- helpers ------------------------------------------------------------------------------------


def _wait(condition: object, timeout: float = 10.0) -> bool:
    from tests.server.servers import wait_until

    return bool(wait_until(condition, timeout))  # type: ignore[arg-type]


def _unread_stream(url: str, key: str) -> socket.socket:
    """A stream whose client reads nothing (a tiny receive buffer, so the hub's writes block)."""
    address = urlsplit(url)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((address.hostname, address.port))
    sock.sendall(
        f"GET /api/v1/stream HTTP/1.1\r\nHost: {address.netloc}\r\nConnection: close\r\n"
        f"Authorization: Bearer {key}\r\n\r\n".encode()
    )
    return sock


def _drain(sock: socket.socket) -> str:
    """Everything the hub sent on ``sock`` until it ended the stream."""
    sock.settimeout(10)
    chunks = []
    with sock:
        while chunk := sock.recv(1 << 20):
            chunks.append(chunk)
    return b"".join(chunks).decode(errors="replace").replace("\r\n", "\n")


def _set_version_elsewhere(database_url: str, org_id: uuid.UUID, version: int) -> None:
    """Write the version from another process, as the CLI would."""
    code = (
        "import sys\n"
        "from sqlalchemy import text\n"
        "from tests.server.database import direct_session\n"
        "with direct_session(sys.argv[1]) as s:\n"
        f"    s.execute(text('INSERT INTO {VERSIONS_TABLE} (org_id, version) "
        "VALUES (:o, :v)'), {'o': sys.argv[2], 'v': int(sys.argv[3])})\n"
        "    s.commit()\n"
    )
    subprocess.run(
        [sys.executable, "-c", code, database_url, str(org_id), str(version)], check=True
    )
