"""The SDK's HTTP clients share one TLS context per process."""

from __future__ import annotations

import ssl
import threading

import httpx
import pytest

from agentops_sdk import hub_http


def test_every_client_of_the_process_shares_one_tls_context_made_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    made: list[ssl.SSLContext] = []

    def create_ssl_context() -> ssl.SSLContext:
        context = ssl.create_default_context()
        made.append(context)
        return context

    monkeypatch.setattr(hub_http, "_context", None)
    monkeypatch.setattr(httpx, "create_ssl_context", create_ssl_context)
    clients: list[httpx.Client] = []
    start = threading.Barrier(4)

    def make() -> None:
        start.wait()
        clients.append(hub_http.hub_client({"User-Agent": "test"}, 1.0))

    threads = [threading.Thread(target=make) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(made) == 1
    assert len(clients) == 4
    assert hub_http.tls_context() is made[0]
    for client in clients:
        client.close()


def test_a_transport_of_a_tests_own_needs_no_tls_context(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hub_http, "_context", None)
    transport = httpx.MockTransport(lambda request: httpx.Response(204))

    with hub_http.hub_client({"User-Agent": "test"}, 1.0, transport) as client:
        assert client.get("http://hub.invalid/").status_code == 204
    assert hub_http._context is None
