"""The browser's part in an external sign-in (OAuth/OIDC): ask the hub to authorize, follow it to
the provider, come back to the hub's callback::

    response = browser_sign_in(client, "corp", PUBLIC_URL)
"""

from __future__ import annotations

from urllib.parse import urlsplit

import httpx

from tests.server.api import Client


def browser_sign_in(
    client: Client,
    provider: str,
    public_url: str,
    *,
    params: dict[str, str] | None = None,
) -> httpx.Response:
    """Sign in as a browser does: ask the hub to authorize, follow it to the provider, which
    redirects back to the hub's callback (at ``public_url``); the hub's answer to that."""
    callback = provider_leg(client, provider, params=params)
    return client.get(hub_path(callback, public_url))


def provider_leg(client: Client, provider: str, *, params: dict[str, str] | None = None) -> str:
    """The first half of a sign-in: the URL the provider sends the browser back to."""
    started = client.get(
        f"/api/v1/auth/oauth/{provider}/authorize", params=params, follow_redirects=False
    )
    assert started.status_code == 302, started.text
    at_provider = httpx.get(started.headers["location"], follow_redirects=False)
    assert at_provider.status_code == 302, at_provider.text
    return at_provider.headers["location"]


def hub_path(url: str, public_url: str) -> str:
    """The path and query of a URL on the hub at ``public_url``."""
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}" == public_url, url
    return f"{parts.path}?{parts.query}"
