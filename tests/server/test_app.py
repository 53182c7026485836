from __future__ import annotations

import pytest
from litestar.testing import TestClient

from agentops_server.app import create_app

pytestmark = pytest.mark.extras  # needs the server extra


def test_health_reports_ok_and_the_version() -> None:
    from agentops_sdk import __version__

    with TestClient(app=create_app()) as client:
        response = client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "version": __version__}
