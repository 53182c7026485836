"""The hub's side of the hub link: its event stream, and ETag polling when the stream fails.

:class:`HubStream` holds ``GET /api/v1/stream`` (Server-Sent Events, read with httpx-sse) on the
link's thread. Each event has a kind, an id and JSON data:

- ``controls``: the org's whole ``ControlSet``, which becomes the ``controls`` topic (and is
  saved to disk, :mod:`agentops_sdk.enforcement.saved`). The hub sends one first on every
  connection, so a fresh client needs no separate fetch.
- ``heartbeat`` (every 15 s at least): the hub is there and nothing changed; the copy is
  confirmed (an update repeating it), which is what keeps it from going stale.
- ``resync``: the hub dropped events meant for this client; the set is fetched again.
- any other kind (added by later issues) is skipped.

The last event id goes back as ``Last-Event-ID`` when the stream is reopened, so the hub resumes
where it broke. A stream silent for ``silence`` seconds (two heartbeats missed) counts as cut.

When the stream cannot be held, it is reopened after a backoff with full jitter (``retry_delay``,
1 s, doubling up to ``max_retry_delay``, 30 s) and meanwhile ``GET /api/v1/controls`` is polled
with ``If-None-Match`` every ``poll_interval`` seconds (at once the first time): 304 confirms the
copy, 200 brings a new set. Losing and regaining the stream, and polls failing and working
again, are logged once each.

httpx, httpx-sse and pydantic are imported on the link's thread, at the first connection: neither
``import agentops_sdk`` nor ``init()`` pays for them.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Final

from agentops_sdk._version import __version__
from agentops_sdk.enforcement.controls import TOPIC
from agentops_sdk.enforcement.failures import FailureLog
from agentops_sdk.enforcement.link import Backoff, HubSource, Snapshot, Update
from agentops_sdk.exporters import SDK_NAME

if TYPE_CHECKING:
    import httpx
    import httpx_sse

    from agentops_sdk.contract.controls import ControlSet
    from agentops_sdk.enforcement.saved import SavedControls

__all__ = ["CONTROLS_PATH", "STREAM_PATH", "HubStream"]

logger = logging.getLogger("agentops_sdk")

STREAM_PATH: Final = "/api/v1/stream"
CONTROLS_PATH: Final = "/api/v1/controls"


class HubStream(HubSource):
    """Reads the hub's controls for the hub link: pushed on its stream, polled when it fails."""

    def __init__(
        self,
        hub_url: str,
        api_key: str,
        *,
        poll_interval: float = 10.0,
        saved: SavedControls | None = None,
        request_timeout: float = 10.0,
        retry_delay: float = 1.0,
        max_retry_delay: float = 30.0,
        silence: float = 35.0,
    ) -> None:
        base = hub_url.rstrip("/")
        self.stream_url = base + STREAM_PATH
        self.controls_url = base + CONTROLS_PATH
        self.poll_interval = poll_interval
        self.saved = saved
        self.request_timeout = request_timeout
        self.retry_delay = retry_delay
        self.max_retry_delay = max_retry_delay
        self.silence = silence
        self._api_key = api_key
        self._last_event_id: str | None = None
        self._stream_down = False
        self._poll_down = False
        self._failures = FailureLog()
        self._lock = threading.Lock()
        self._reading: set[socket.socket] = set()

    def updates(
        self, topics: frozenset[str], known: Snapshot, stop: threading.Event
    ) -> Iterator[Update]:
        """The hub's controls as they change (and each time it confirms them), until ``stop``."""
        import httpx

        held = _Held(known)
        backoff = Backoff(self.retry_delay, self.max_retry_delay)
        headers = {
            "Authorization": f"Bearer {self._api_key}",
            "User-Agent": f"{SDK_NAME}/{__version__}",
        }
        client = httpx.Client(headers=headers, timeout=self.request_timeout)
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
                    polled = self._poll_reporting(client, held)
                    if polled is not None:
                        yield polled
                if stop.wait(max(0.0, min(reconnect_at, poll_at) - time.monotonic())):
                    return
        finally:
            client.close()

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

    # -- the stream ---------------------------------------------------------------------------

    def _listen(self, client: httpx.Client, held: _Held, stop: threading.Event) -> Iterator[Update]:
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
                    update = self._on_event(event, client, held)
                    if update is not None:
                        yield update
            finally:
                if sock is not None:
                    with self._lock:
                        self._reading.discard(sock)

    def _on_event(
        self, event: httpx_sse.ServerSentEvent, client: httpx.Client, held: _Held
    ) -> Update | None:
        kind = event.event
        if kind == "controls":
            from agentops_sdk.contract.controls import ControlSet

            try:
                controls = ControlSet.model_validate_json(event.data)
            except ValueError:
                self._failures.failed(
                    self, "agentops: the hub sent controls this SDK cannot read; keeping the last"
                )
                return None
            return held.take(controls, "stream", self.saved)
        if kind == "heartbeat":
            return held.confirm("stream", self.saved)
        if kind == "resync":
            self._last_event_id = None  # what we missed is gone: start over when reopening
            return self._poll_reporting(client, held)
        return None

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

    def _poll_reporting(self, client: httpx.Client, held: _Held) -> Update | None:
        """Fetch the controls once; a failure is logged (once until a poll works) and None."""
        import httpx

        try:
            update = self._poll(client, held)
        except (httpx.HTTPError, _Refused, ValueError) as exc:
            if not self._poll_down:
                self._poll_down = True
                logger.log(
                    logging.ERROR if _refused_key(exc) else logging.WARNING,
                    "agentops: cannot fetch the hub's controls at %s (%s); the last ones "
                    "known stay in force",
                    self.controls_url,
                    _describe(exc),
                )
            return None
        if self._poll_down:
            self._poll_down = False
            logger.info("agentops: the hub's controls can be fetched again")
        return update

    def _poll(self, client: httpx.Client, held: _Held) -> Update | None:
        headers = {} if held.etag is None else {"If-None-Match": held.etag}
        response = client.get(self.controls_url, headers=headers)
        if response.status_code == 304:
            return held.confirm("poll", self.saved)
        if response.status_code != 200:
            raise _Refused(response)
        from agentops_sdk.contract.controls import ControlSet

        return held.take(ControlSet.model_validate_json(response.content), "poll", self.saved)


class _Held:
    """The set this source last passed on (or the link held when it started) and its ETag."""

    __slots__ = ("etag", "value")

    def __init__(self, known: Snapshot) -> None:
        value = known.get(TOPIC)
        self.value: ControlSet | None = value
        self.etag = known.etags.get(TOPIC) if value is not None else None

    def take(self, controls: ControlSet, via: str, saved: SavedControls | None) -> Update:
        """A set came: the update for it. The held set is passed on again when this one has its
        ETag (the same version), so that stages keep what they compiled from it."""
        if controls.etag == self.etag and self.value is not None:
            controls = self.value
            if saved is not None:
                saved.touch()
        else:
            self.value, self.etag = controls, controls.etag
            if saved is not None:
                saved.save(controls)
        return Update(TOPIC, controls, controls.etag, via=via)

    def confirm(self, via: str, saved: SavedControls | None) -> Update | None:
        """The hub confirmed the held set: an update repeating it (None if none is held)."""
        if self.value is None:
            return None
        if saved is not None:
            saved.touch()
        return Update(TOPIC, self.value, self.etag, via=via)


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
