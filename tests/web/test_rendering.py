"""What the pages render from data anyone could have written: escaped, never markup."""

from __future__ import annotations

from litestar import Litestar
from litestar.testing import TestClient

from agentops_server.security.permissions import Role
from agentops_server.settings import Settings
from tests.server.principals import People
from tests.web.people import signed_in

MARKUP = '<script>alert("owned")</script><img src=x onerror=alert(1)>'


def test_text_from_the_database_is_escaped_on_the_pages(
    browser_client: TestClient[Litestar], settings: Settings, people: People
) -> None:
    token = signed_in(browser_client, settings, people, Role.OWNER)
    form = {"_csrf_token": token, "scope_kind": "tag", "scope_value": MARKUP, "reason": MARKUP}
    set_control = browser_client.post("/controls", data={**form, "state": "paused"})
    assert set_control.status_code == 200, set_control.text

    page = browser_client.get("/controls").text

    assert MARKUP not in page
    assert "&lt;script&gt;alert(&#34;owned&#34;)&lt;/script&gt;" in page
