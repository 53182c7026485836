"""plotly.js as a plain HTTP client gets it from a hub process: gzip-compressed when the client
accepts gzip, as it is otherwise, with ``Vary: Accept-Encoding``, a public max-age and an ETag of
each representation's own that answers 304."""

from __future__ import annotations

import gzip

import httpx
import pytest

from agentops_server.web.charts import PLOTLY_PATH, plotly_file
from tests.e2e.hubs import SharedHub


def fetch(hub: SharedHub, **headers: str) -> tuple[httpx.Response, bytes]:
    """The answer to ``GET /vendor/plotly.min.js`` and its body as sent (not decoded)."""
    with httpx.stream("GET", hub.url + PLOTLY_PATH, headers=headers, timeout=30) as answer:
        return answer, b"".join(answer.iter_raw())


def cache_control(answer: httpx.Response) -> set[str]:
    return {part.strip() for part in answer.headers["cache-control"].split(",")}


def test_a_client_accepting_gzip_gets_plotly_compressed_and_cacheable(web_hub: SharedHub) -> None:
    original = plotly_file().read_bytes()

    answer, sent = fetch(web_hub, **{"Accept-Encoding": "br, gzip;q=0.8"})

    assert answer.status_code == 200
    assert answer.headers["content-encoding"] == "gzip"
    assert answer.headers["content-type"].startswith("text/javascript")
    assert "Accept-Encoding" in answer.headers["vary"]
    assert cache_control(answer) == {"public", "max-age=300"}
    assert answer.headers["etag"].endswith('-gzip"')
    assert int(answer.headers["content-length"]) == len(sent)
    assert len(sent) < len(original) * 0.4
    assert gzip.decompress(sent) == original


@pytest.mark.parametrize("accepted", ["identity", "gzip;q=0", ""])
def test_a_client_not_accepting_gzip_gets_plotly_as_it_is(
    web_hub: SharedHub, accepted: str
) -> None:
    answer, sent = fetch(web_hub, **{"Accept-Encoding": accepted})

    assert answer.status_code == 200
    assert "content-encoding" not in answer.headers
    assert "Accept-Encoding" in answer.headers["vary"]
    assert cache_control(answer) == {"public", "max-age=300"}
    assert answer.headers["etag"].startswith('"plotly-')
    assert not answer.headers["etag"].endswith('-gzip"')
    assert sent == plotly_file().read_bytes()


def test_each_representation_revalidates_by_its_own_etag(web_hub: SharedHub) -> None:
    zipped, _ = fetch(web_hub, **{"Accept-Encoding": "gzip"})
    plain, _ = fetch(web_hub, **{"Accept-Encoding": "identity"})
    assert zipped.headers["etag"] != plain.headers["etag"]

    again, body = fetch(
        web_hub, **{"Accept-Encoding": "gzip", "If-None-Match": zipped.headers["etag"]}
    )
    other, _ = fetch(web_hub, **{"Accept-Encoding": "gzip", "If-None-Match": plain.headers["etag"]})

    assert again.status_code == 304
    assert body == b""
    assert again.headers["etag"] == zipped.headers["etag"]
    assert "Accept-Encoding" in again.headers["vary"]
    assert other.status_code == 200
