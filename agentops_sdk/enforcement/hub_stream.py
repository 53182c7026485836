"""The hub's side of the hub link: its event stream, and ETag polling when the stream fails.

:class:`HubStream` holds ``GET /api/v1/stream`` (Server-Sent Events, read with httpx-sse) on the
link's thread. Each event has a kind, an id and JSON data:

- ``controls``: the org's whole ``ControlSet``, which becomes the ``controls`` topic (and is
  saved to disk, :mod:`agentops_sdk.enforcement.saved`). The hub sends one first on every
  connection, so a fresh client needs no separate fetch.
- ``policies`` (read when a policy stage is installed): the org's ``EffectivePolicy``; its set,
  compiled here on the link's thread, becomes the ``policies`` topic (None when the org has no
  active set: the local policy file applies), and is saved to disk beside the controls.
- ``approvals`` (read when the approval stage is installed): the org's recently decided
  approval requests (an ``ApprovalFeed``), which become the ``approvals`` topic: a read-only
  mapping of request id to ``ApprovalRequest``. It is not polled: a waiting approval reads its
  own request (``GET /api/v1/approvals/{id}``) while the stream is down
  (:mod:`agentops_sdk.enforcement.approvals`).
- ``budgets`` (read when the budget stage is installed): the org's ``BudgetSet``, which becomes
  the ``budgets`` topic; polled (``GET /api/v1/budgets/effective``) like the policies.
- ``heartbeat`` (every 15 s at least): the hub is there and nothing changed; the controls are
  confirmed (an update repeating them), which is what keeps them from going stale.
- ``resync``: the hub dropped events meant for this client; everything is fetched again.
- any other kind (added by later issues) is skipped.

The last event id goes back as ``Last-Event-ID`` when the stream is reopened, so the hub resumes
where it broke. A stream silent for ``silence`` seconds (two heartbeats missed) counts as cut.

When the stream cannot be held, it is reopened after a backoff with full jitter (``retry_delay``,
1 s, doubling up to ``max_retry_delay``, 30 s) and meanwhile ``GET /api/v1/controls`` is polled
with ``If-None-Match`` every ``poll_interval`` seconds (at once the first time), and
``GET /api/v1/policies/effective`` and ``GET /api/v1/budgets/effective`` likewise when they are
read: 304 confirms the copy, 200
brings a new one. Losing and regaining the stream, and polls of each failing and working again,
are logged once each.

httpx, httpx-sse and pydantic are imported on the link's thread, at the first connection: neither
``import agentops_sdk`` nor ``init()`` pays for them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import operator
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final
from uuid import UUID

from agentops_sdk._version import __version__
from agentops_sdk.enforcement import approvals, budgets, controls, policy
from agentops_sdk.enforcement.failures import FailureLog
from agentops_sdk.enforcement.link import Backoff, HubSource, Snapshot, Update
from agentops_sdk.exporters import SDK_NAME
from agentops_sdk.hub_http import hub_client

if TYPE_CHECKING:
    import httpx
    import httpx_sse

    from agentops_sdk.contract.approvals import ApprovalFeed, ApprovalRequest
    from agentops_sdk.contract.budgets import BudgetSet
    from agentops_sdk.contract.controls import ControlSet
    from agentops_sdk.contract.policy import EffectivePolicy
    from agentops_sdk.enforcement.saved import SavedControls, SavedCopy, SavedPolicies

__all__ = ["BUDGETS_PATH", "CONTROLS_PATH", "POLICIES_PATH", "STREAM_PATH", "HubStream"]

logger = logging.getLogger("agentops_sdk")

STREAM_PATH: Final = "/api/v1/stream"
CONTROLS_PATH: Final = "/api/v1/controls"
POLICIES_PATH: Final = "/api/v1/policies/effective"
BUDGETS_PATH: Final = "/api/v1/budgets/effective"


@dataclasses.dataclass(frozen=True, slots=True)
class _Feed:
    """One topic the hub serves: where to poll it, how to read what comes, what the link holds
    of it, and where it is saved."""

    topic: str
    """Also the kind of its events on the stream."""
    url: str | None
    """Where to poll it; None: pushed on the stream only."""
    read: Callable[[str | bytes], Any]
    """The wire model from JSON (raises ``ValueError``); it has an ``etag``."""
    held: Callable[[Any], Any]
    """What the link's topic holds for a wire value."""
    saved: SavedCopy[Any] | None
    etag: Callable[[Any], str] = operator.attrgetter("etag")
    """The version of a wire value."""


class HubStream(HubSource):
    """Reads the hub's controls (and policies) for the hub link: pushed on its stream, polled
    when it fails."""

    def __init__(
        self,
        hub_url: str,
        api_key: str,
        *,
        poll_interval: float = 10.0,
        saved: SavedControls | None = None,
        saved_policies: SavedPolicies | None = None,
        request_timeout: float = 10.0,
        retry_delay: float = 1.0,
        max_retry_delay: float = 30.0,
        silence: float = 35.0,
    ) -> None:
        base = hub_url.rstrip("/")
        self.stream_url = base + STREAM_PATH
        self.controls_url = base + CONTROLS_PATH
        self.policies_url = base + POLICIES_PATH
        self.budgets_url = base + BUDGETS_PATH
        self.poll_interval = poll_interval
        self.saved = saved
        self.saved_policies = saved_policies
        self.request_timeout = request_timeout
        self.retry_delay = retry_delay
        self.max_retry_delay = max_retry_delay
        self.silence = silence
        self._api_key = api_key
        self._last_event_id: str | None = None
        self._stream_down = False
        self._connected = False
        self._opened = 0
        self._poll_down: set[str] = set()
        self._failures = FailureLog()
        self._lock = threading.Lock()
        self._reading: set[socket.socket] = set()

    def updates(
        self, topics: frozenset[str], known: Snapshot, stop: threading.Event
    ) -> Iterator[Update]:
        """The hub's controls (and policies, if among ``topics``) as they change, and each time
        it confirms the controls, until ``stop``."""
        import httpx

        held = {feed.topic: _Held(feed, known) for feed in self._feeds(topics)}
        backoff = Backoff(self.retry_delay, self.max_retry_delay)
        headers = {
            "Authorization": f"Bearer {self._api_key}",
            "User-Agent": f"{SDK_NAME}/{__version__}",
        }
        client = hub_client(headers, self.request_timeout)
        try:
            reconnect_at = poll_at = time.monotonic()
            while not stop.is_set():
                if time.monotonic() >= reconnect_at:
                    listened = False
                    try:
                        for update in self._listen(client, held, stop):
                            listened = True
                            yield update
                    except (httpx.HTTPError, _Refused) as exc:
                        if not listened and not stop.is_set():  # a stream that ran and broke
                            self._stream_failed(exc)  # is simply reopened
                    if stop.is_set():
                        return
                    if listened:
                        backoff.reset()
                        poll_at = time.monotonic() + self.poll_interval  # current until now
                    reconnect_at = time.monotonic() + backoff.next()
                if time.monotonic() >= poll_at:
                    poll_at = time.monotonic() + self.poll_interval
                    yield from self._poll_all(client, held)
                if stop.wait(max(0.0, min(reconnect_at, poll_at) - time.monotonic())):
                    return
        finally:
            client.close()

    @property
    def connected(self) -> bool:
        """Whether the hub's event stream is open now."""
        return self._connected

    @property
    def opened(self) -> int:
        """How many times the hub's event stream was opened."""
        return self._opened

    def interrupt(self) -> None:
        """Wake the stream's blocked read: the link is stopping."""
        with self._lock:
            reading = list(self._reading)
        for sock in reading:
            with contextlib.suppress(OSError):  # closed meanwhile: nothing left to wake
                sock.shutdown(socket.SHUT_RDWR)

    def after_fork(self) -> None:
        """A forked child reads the hub on its own connections (``updates`` makes them)."""
        self._lock = threading.Lock()
        self._reading = set()
        self._failures = FailureLog()

    def _feeds(self, topics: frozenset[str]) -> list[_Feed]:
        """The controls, and the policies when a stage reads them."""
        feeds = [_Feed(controls.TOPIC, self.controls_url, _read_controls, _same, self.saved)]
        if policy.TOPIC in topics:
            feeds.append(
                _Feed(
                    policy.TOPIC,
                    self.policies_url,
                    _read_policies,
                    policy.hub_policy,
                    self.saved_policies,
                )
            )
        if budgets.TOPIC in topics:
            feeds.append(_Feed(budgets.TOPIC, self.budgets_url, _read_budgets, _same, None))
        if approvals.TOPIC in topics:
            feeds.append(
                _Feed(
                    approvals.TOPIC,
                    None,
                    _read_approvals,
                    _decided_by_id,
                    None,
                    operator.attrgetter("version"),
                )
            )
        return feeds

    # -- the stream ---------------------------------------------------------------------------

    def _listen(
        self, client: httpx.Client, held: dict[str, _Held], stop: threading.Event
    ) -> Iterator[Update]:
        """The updates the stream brings until it ends or breaks (raises), or ``stop``."""
        import httpx
        import httpx_sse

        headers = {} if self._last_event_id is None else {"Last-Event-ID": self._last_event_id}
        timeout = httpx.Timeout(self.request_timeout, read=self.silence)
        with httpx_sse.connect_sse(
            client, "GET", self.stream_url, headers=headers, timeout=timeout
        ) as events:
            response = events.response
            if response.status_code != 200:
                response.read()
                raise _Refused(response)
            sock = _socket_of(response)
            if sock is not None:
                with self._lock:
                    self._reading.add(sock)
            self._connected = True
            self._opened += 1
            try:
                if stop.is_set():  # after registering: an interrupt from now on wakes us
                    return
                if self._stream_down:
                    self._stream_down = False
                    logger.info("agentops: the hub's event stream is back")
                for event in events.iter_sse():
                    if stop.is_set():
                        return
                    if event.id:
                        self._last_event_id = event.id
                    yield from self._on_event(event, client, held)
            finally:
                self._connected = False
                if sock is not None:
                    with self._lock:
                        self._reading.discard(sock)

    def _on_event(
        self, event: httpx_sse.ServerSentEvent, client: httpx.Client, held: dict[str, _Held]
    ) -> Iterator[Update]:
        kind = event.event
        topic = held.get(kind)
        if topic is not None:
            try:
                value = topic.feed.read(event.data)
            except ValueError:
                self._failures.failed(
                    self, f"agentops: the hub sent {kind} this SDK cannot read; keeping the last"
                )
                return
            yield topic.take(value, "stream")
        elif kind == "heartbeat":
            for topic in held.values():
                confirmed = topic.confirm("stream")
                if confirmed is not None and topic.feed.topic == controls.TOPIC:
                    yield confirmed  # what keeps the controls from going stale
        elif kind == "resync":
            self._last_event_id = None  # what we missed is gone: start over when reopening
            yield from self._poll_all(client, held)

    def _stream_failed(self, exc: Exception) -> None:
        if self._stream_down:
            return
        self._stream_down = True
        logger.log(
            logging.ERROR if _refused_key(exc) else logging.WARNING,
            "agentops: cannot hold the hub's event stream at %s (%s); polling for controls "
            "every %g s until it is back",
            self.stream_url,
            _describe(exc),
            self.poll_interval,
        )

    # -- polling ------------------------------------------------------------------------------

    def _poll_all(self, client: httpx.Client, held: dict[str, _Held]) -> Iterator[Update]:
        """Fetch every topic once (what fails is logged and skipped)."""
        for topic in held.values():
            if topic.feed.url is None:
                continue  # pushed only
            polled = self._poll_reporting(client, topic)
            if polled is not None:
                yield polled

    def _poll_reporting(self, client: httpx.Client, held: _Held) -> Update | None:
        """Fetch one topic once; a failure is logged (once until a poll of it works) and None."""
        import httpx

        feed = held.feed
        assert feed.url is not None
        try:
            update = self._poll(client, held)
        except (httpx.HTTPError, _Refused, ValueError) as exc:
            if feed.topic not in self._poll_down:
                self._poll_down.add(feed.topic)
                logger.log(
                    logging.ERROR if _refused_key(exc) else logging.WARNING,
                    "agentops: cannot fetch the hub's %s at %s (%s); the last ones known stay "
                    "in force",
                    feed.topic,
                    feed.url,
                    _describe(exc),
                )
            return None
        if feed.topic in self._poll_down:
            self._poll_down.discard(feed.topic)
            logger.info("agentops: the hub's %s can be fetched again", feed.topic)
        return update

    def _poll(self, client: httpx.Client, held: _Held) -> Update | None:
        headers = {} if held.etag is None else {"If-None-Match": held.etag}
        assert held.feed.url is not None
        response = client.get(held.feed.url, headers=headers)
        if response.status_code == 304:
            return held.confirm("poll")
        if response.status_code != 200:
            raise _Refused(response)
        return held.take(held.feed.read(response.content), "poll")


class _Held:
    """What this source last passed on of one topic (or the link held when it started), and
    its ETag."""

    __slots__ = ("etag", "feed", "value")

    def __init__(self, feed: _Feed, known: Snapshot) -> None:
        self.feed = feed
        held = feed.topic in known.values
        self.value: Any = known.get(feed.topic)
        self.etag = known.etags.get(feed.topic) if held else None

    def take(self, wire: Any, via: str) -> Update:
        """A value came: the update for it. The held value is passed on again when this one has
        its ETag (the same version), so that stages keep what they compiled from it."""
        saved = self.feed.saved
        etag = self.feed.etag(wire)
        if etag == self.etag:
            if saved is not None:
                saved.touch()
        else:
            self.value, self.etag = self.feed.held(wire), etag
            if saved is not None:
                saved.save(wire)
        return Update(self.feed.topic, self.value, self.etag, via=via)

    def confirm(self, via: str) -> Update | None:
        """The hub confirmed the held value: an update repeating it (None if none is held)."""
        if self.etag is None:
            return None
        if self.feed.saved is not None:
            self.feed.saved.touch()
        return Update(self.feed.topic, self.value, self.etag, via=via)


def _read_controls(data: str | bytes) -> ControlSet:
    from agentops_sdk.contract.controls import ControlSet

    return ControlSet.model_validate_json(data)


def _read_policies(data: str | bytes) -> EffectivePolicy:
    from agentops_sdk.contract.policy import EffectivePolicy

    return EffectivePolicy.model_validate_json(data)


def _read_budgets(data: str | bytes) -> BudgetSet:
    from agentops_sdk.contract.budgets import BudgetSet

    return BudgetSet.model_validate_json(data)


def _read_approvals(data: str | bytes) -> ApprovalFeed:
    from agentops_sdk.contract.approvals import ApprovalFeed

    return ApprovalFeed.model_validate_json(data)


def _decided_by_id(feed: ApprovalFeed) -> Mapping[UUID, ApprovalRequest]:
    """What the ``approvals`` topic holds: the feed's requests by id, read-only."""
    return MappingProxyType({request.id: request for request in feed.requests})


def _same(value: Any) -> Any:
    return value


class _Refused(Exception):
    """The hub answered, but not with what was asked (a 4xx or 5xx)."""

    def __init__(self, response: httpx.Response) -> None:
        from agentops_sdk.exporters.hub import _problem_detail

        super().__init__(f"HTTP {response.status_code}: {_problem_detail(response)}")
        self.status = response.status_code


def _refused_key(exc: Exception) -> bool:
    return isinstance(exc, _Refused) and exc.status in (401, 403)


def _describe(exc: Exception) -> str:
    return str(exc) if isinstance(exc, _Refused) else f"{type(exc).__name__}: {exc}"


def _socket_of(response: httpx.Response) -> socket.socket | None:
    """The socket under ``response``, to wake its reader from another thread."""
    stream = response.extensions.get("network_stream")
    sock = None if stream is None else stream.get_extra_info("socket")
    return sock if isinstance(sock, socket.socket) else None
